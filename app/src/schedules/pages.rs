//! Schedule pages.
