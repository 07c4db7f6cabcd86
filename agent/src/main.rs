use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match clou_agent::run(&args, std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("clou-agent: {err}");
            ExitCode::from(2)
        }
    }
}
