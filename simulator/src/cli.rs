//! `custody simulate`: the three modes behind the command line.

use std::time::Duration;

use chrono::Days;
use custody_protocol::SignedRequest;
use serde_json::Value;

use super::cabinet::{business_serial_of, AbnormalReason, CancellationReason, DepositKind, Trip};
use super::error::SimulateError;
use super::generate::{china_time, document_id, now_millis, random_document_record};
use super::http::{http_client, post, provision_fleet, OpsClient, ServiceReply};
use super::load::{run_load, LoadConfig};
use super::SimulateArgs;

pub(super) async fn run(args: SimulateArgs) -> Result<(), SimulateError> {
    if args.crypto_ceiling {
        return crypto_ceiling(Duration::from_secs(args.duration)).await;
    }
    let token = args
        .ops_token
        .as_deref()
        .filter(|token| !token.trim().is_empty())
        .ok_or_else(|| {
            SimulateError::Options("no operator token: pass --token or set CUSTODY_TOKEN".into())
        })?;
    let client = http_client(
        Duration::from_secs(args.timeout.max(1)),
        args.concurrency.max(1),
    )?;
    let ops = OpsClient::new(client, &args.url, token)?;
    if args.load {
        let config = LoadConfig {
            cabinets: args.cabinets,
            duration: Duration::from_secs(args.duration),
            concurrency: args.concurrency,
            max_requests: args.requests,
            rate: args.rate,
        };
        config.validate()?;
        eprintln!(
            "setting up {} cabinets at {}, then preparing {} reports ...",
            config.cabinets,
            ops.base_url(),
            config.max_requests
        );
        let report = run_load(&ops, &config).await?;
        print!("{report}");
        Ok(())
    } else if args.deposit {
        single_deposit(&ops).await
    } else {
        lifecycle(&ops).await
    }
}

/// Prints what the cores can verify and open when they do nothing else (the service's own
/// functions, from this build).
async fn crypto_ceiling(budget: Duration) -> Result<(), SimulateError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let ceiling =
        tokio::task::spawn_blocking(move || custody_protocol::ceiling::measure(threads, budget))
            .await
            .map_err(|err| SimulateError::Options(format!("the measurement failed: {err}")))??;
    println!(
        "crypto ceiling: {} threads for {:.0} s, verify (tabled) {:.1} µs + open {:.1} µs per \
         report = {:.0} reports/s",
        ceiling.threads,
        budget.as_secs_f64(),
        ceiling.verify_us,
        ceiling.open_us,
        ceiling.reports_per_second
    );
    Ok(())
}

/// One cabinet, one deposit of a new random document.
async fn single_deposit(ops: &OpsClient) -> Result<(), SimulateError> {
    let fleet = provision_fleet(ops, 1, now_millis()).await?;
    let Some(cabinet) = fleet.cabinets.first() else {
        return Err(SimulateError::Options("no cabinet was provisioned".into()));
    };
    println!(
        "unit {} ({}), cabinet {} enrolled and activated",
        fleet.unit_credit_code,
        fleet.unit_name,
        cabinet.device_serial()
    );
    let record = random_document_record(&mut rand::rng());
    let request = cabinet.deposit(&record, &cabinet.drawer(0), DepositKind::New, now_millis())?;
    println!(
        "deposit of {} {} (zjbs {}), reqid {}, ywlsh {}",
        record.document_type,
        record.document_number,
        document_id(&record)?,
        request.c.reqid,
        business_serial_of(&request).unwrap_or_default()
    );
    let (status, body) = post(ops.client(), ops.base_url(), &request).await?;
    println!("HTTP {status}");
    println!(
        "{}",
        serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
    );
    Ok(())
}

/// What a lifecycle step should get back.
struct Expected {
    status: u16,
    error_code: &'static str,
    duplicate: bool,
}

const ACCEPTED: Expected = Expected {
    status: 200,
    error_code: "0",
    duplicate: false,
};

/// One cabinet and one document through every report type, checking each answer.
async fn lifecycle(ops: &OpsClient) -> Result<(), SimulateError> {
    let fleet = provision_fleet(ops, 1, now_millis()).await?;
    let Some(cabinet) = fleet.cabinets.first() else {
        return Err(SimulateError::Options("no cabinet was provisioned".into()));
    };
    let record = random_document_record(&mut rand::rng());
    let zjbs = document_id(&record)?;
    println!(
        "unit {} ({}), cabinet {} enrolled and activated; document {} {} (zjbs {})",
        fleet.unit_credit_code,
        fleet.unit_name,
        cabinet.device_serial(),
        record.document_type,
        record.document_number,
        zjbs
    );
    let drawer = cabinet.drawer(0);
    let trip = Trip {
        purpose: "旅游".into(),
        destination: "HKG".into(),
        travel_approval_serial: None,
    };
    let mut unexpected = 0;

    let heartbeat = cabinet.heartbeat(now_millis())?;
    unexpected += step(ops, "heartbeat", &heartbeat, &ACCEPTED).await?;

    let deposit = cabinet.deposit(&record, &drawer, DepositKind::New, now_millis())?;
    unexpected += step(ops, "deposit (11)", &deposit, &ACCEPTED).await?;
    let replay = Expected {
        status: 409,
        error_code: "E_REPLAY",
        duplicate: false,
    };
    unexpected += step(ops, "same request again", &deposit, &replay).await?;
    let retry = cabinet.sign_again(&deposit, now_millis(), None)?;
    let duplicate = Expected {
        duplicate: true,
        ..ACCEPTED
    };
    unexpected += step(ops, "same ywlsh, new reqid", &retry, &duplicate).await?;

    let now = now_millis();
    let return_date = china_time(now)?
        .date_naive()
        .checked_add_days(Days::new(30))
        .ok_or(SimulateError::TimeOutOfRange(now))?;
    let lend = cabinet.lend(&record, &drawer, return_date, &trip, now)?;
    unexpected += step(ops, "lend (21)", &lend, &ACCEPTED).await?;
    let back = cabinet.deposit(&record, &drawer, DepositKind::Return, now_millis())?;
    unexpected += step(ops, "return (12)", &back, &ACCEPTED).await?;
    let take_out = cabinet.take_out(&record, &drawer, None, &trip, now_millis())?;
    unexpected += step(ops, "take out (22)", &take_out, &ACCEPTED).await?;
    let back = cabinet.deposit(&record, &drawer, DepositKind::Return, now_millis())?;
    unexpected += step(ops, "return (12)", &back, &ACCEPTED).await?;
    let abnormal =
        cabinet.abnormal_withdrawal(&record, &drawer, AbnormalReason::Missing, now_millis())?;
    unexpected += step(ops, "abnormal withdrawal (23)", &abnormal, &ACCEPTED).await?;
    let alarm = cabinet.alarm("电压", "检测到断电，目前 UPS 供电", now_millis())?;
    unexpected += step(ops, "alarm", &alarm, &ACCEPTED).await?;
    let cancellation = cabinet.cancellation(&zjbs, CancellationReason::Lost, now_millis())?;
    unexpected += step(ops, "cancellation", &cancellation, &ACCEPTED).await?;
    let again = cabinet.deposit(&record, &drawer, DepositKind::Return, now_millis())?;
    let refused = Expected {
        status: 409,
        error_code: "E_ILLEGAL_TRANSITION",
        duplicate: false,
    };
    unexpected += step(ops, "deposit after cancellation", &again, &refused).await?;

    if unexpected > 0 {
        return Err(SimulateError::Options(format!(
            "{unexpected} step(s) got an unexpected answer"
        )));
    }
    println!("every step answered as expected");
    Ok(())
}

/// Sends one step, prints the answer beside the expectation; returns 1 when they differ.
async fn step(
    ops: &OpsClient,
    name: &str,
    request: &SignedRequest,
    expected: &Expected,
) -> Result<usize, SimulateError> {
    let (status, body) = post(ops.client(), ops.base_url(), request).await?;
    let reply = ServiceReply::from_body(&body);
    let (code, duplicate, message) = match &reply {
        Some(reply) => (
            reply.error_code.as_str(),
            reply.duplicate,
            reply.error_msg.as_str(),
        ),
        None => ("-", false, body.as_str().unwrap_or("")),
    };
    let as_expected =
        status == expected.status && code == expected.error_code && duplicate == expected.duplicate;
    println!(
        "{:<28} {:<10} HTTP {status} {code:<22} duplicate={duplicate:<5} {}{}",
        name,
        request.mstype,
        if as_expected {
            "ok".to_owned()
        } else {
            format!(
                "UNEXPECTED (wanted HTTP {} {} duplicate={})",
                expected.status, expected.error_code, expected.duplicate
            )
        },
        if message.is_empty() || as_expected {
            String::new()
        } else {
            format!(" ({message})")
        }
    );
    if !as_expected && reply.is_none() && !matches!(body, Value::Null) {
        println!("    body: {body}");
    }
    Ok(usize::from(!as_expected))
}
