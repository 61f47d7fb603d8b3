fn main() {
    println!("hello from fast-build");
}
