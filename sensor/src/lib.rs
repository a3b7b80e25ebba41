//! rstwatch sensor engine.
