fn main() -> std::process::ExitCode {
    kube_sim::main_with_args(std::env::args_os())
}
