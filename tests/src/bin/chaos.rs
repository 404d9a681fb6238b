//! `chaos [--seed N] [--minutes M] [--frames F] [--samples S] [--no-baseline]`: one chaos run (see
//! `rendermesh_tests::chaos`), printing one summary line; exits 1, naming the seed and the
//! command that replays it, when the mesh loses the job or a frame. `scripts/chaos` builds the
//! binaries and runs it.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use rendermesh_tests::chaos::{self, Options};

fn parse() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut seed = None;
    let mut minutes: f64 = 3.0;
    let mut frames = None;
    let mut samples = None;
    let mut baseline = true;
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seed" => seed = Some(value()?.parse().context("--seed takes a number")?),
            "--minutes" => minutes = value()?.parse().context("--minutes takes a number")?,
            "--frames" => frames = Some(value()?.parse().context("--frames takes a number")?),
            "--samples" => samples = Some(value()?.parse().context("--samples takes a number")?),
            "--no-baseline" => baseline = false,
            "-h" | "--help" => {
                println!(
                    "usage: chaos [--seed N] [--minutes M] [--frames F] [--samples S] [--no-baseline]\n\
                     Runs 4 nodes on a job of F frames (40) of S samples (64) under seeded \
                     faults for M minutes (3), after the same job without faults (unless \
                     --no-baseline)."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (see --help)"),
        }
    }
    let seed = match seed {
        Some(seed) => seed,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?;
            let seed = now.as_secs() % 100_000;
            eprintln!("chaos: no --seed given, using {seed}");
            seed
        }
    };
    if minutes.is_nan() || minutes < 0.0 {
        bail!("--minutes must be 0 or more");
    }
    let mut options = Options::new(seed, minutes);
    if let Some(frames) = frames {
        if frames == 0 {
            bail!("--frames must be 1 or more");
        }
        options.frames = frames;
    }
    if let Some(samples) = samples {
        if samples == 0 {
            bail!("--samples must be 1 or more");
        }
        options.samples = samples;
    }
    options.baseline = baseline;
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    match chaos::run(&options) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
