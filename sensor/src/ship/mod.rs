//! Shipping records to a collector (not built yet: the shipping issue).
