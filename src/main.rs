fn main() {
    std::process::exit(tranche::run(std::env::args_os()));
}
