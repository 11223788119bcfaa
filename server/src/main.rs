//! The `lakehouse` binary; everything lives in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    lakehouse_server::cli::run(std::env::args_os()).await
}
