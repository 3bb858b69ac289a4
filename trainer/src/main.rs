fn main() -> std::process::ExitCode {
    medtrain::cli::main()
}
