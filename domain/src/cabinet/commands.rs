use super::events::*;

#[derive(Debug, Clone, PartialEq)]
pub enum CabinetCommand {
    Enroll(Enrolled),
    Activate(Activated),
    Disable(Disabled),
    RaiseAlarm(AlarmRaised),
}
