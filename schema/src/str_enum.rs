//! A small macro for the closed vocabularies of the schema (classes, states, kinds).
//!
//! Each such enum has a fixed `u8` discriminant (stored on the wire and in ClickHouse
//! `Enum8` columns), a stable lower-level name (used in JSON and SQL), and parses back
//! from that name. Writing these by hand five times is how names drift apart.

/// Defines a `#[repr(u8)]` enum with rkyv derives, `as_str`, `ALL`, `FromStr`,
/// `Display` and a serde `Serialize` that writes the name.
macro_rules! str_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
        #[repr(u8)]
        pub enum $name { $( $(#[$vmeta])* $variant = $value ),+ }

        impl $name {
            /// Every value, in discriminant order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant ),+ ];

            /// The stable name used in JSON, SQL and on the command line.
            pub const fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }

            /// The discriminant, as stored in ClickHouse `Enum8` columns.
            pub const fn code(self) -> u8 { self as u8 }
        }

        impl ::core::str::FromStr for $name {
            type Err = crate::str_enum::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(crate::str_enum::UnknownName {
                        what: stringify!($name),
                        name: s.to_string(),
                    }),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            /// Back from the archived form (the archived enum is a distinct type).
            pub fn from_archived(a: &<$name as rkyv::Archive>::Archived) -> Self {
                match a { $( <$name as rkyv::Archive>::Archived::$variant => $name::$variant ),+ }
            }
        }
    };
}
pub(crate) use str_enum;

/// A name that is not part of a closed vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.name)
    }
}

impl std::error::Error for UnknownName {}
