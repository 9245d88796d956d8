pub struct Unused;
