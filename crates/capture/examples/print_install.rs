//! Prints the install script (handy with `psql -f -`).
fn main() {
    print!("{}", pgtrail_capture::install_script());
}
