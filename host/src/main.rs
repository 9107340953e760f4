//! The `sinkhost` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    sinkhost::cli::main()
}
