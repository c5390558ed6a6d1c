fn main() -> std::process::ExitCode {
    crdb_multiregion::main()
}
