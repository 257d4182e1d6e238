use super::events::*;

/// A request to change a person's filing; each yields at most one event.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonCommand {
    SubmitFiling(FilingSubmitted),
    AcceptFiling(FilingAnswered),
    RefuseFiling(FilingAnswered),
    SubmitChange(ChangeSubmitted),
    AcceptChange(FilingAnswered),
    RefuseChange(FilingAnswered),
    SubmitRevocation(RevocationSubmitted),
    AcceptRevocation(FilingAnswered),
    RefuseRevocation(FilingAnswered),
    ErasePersonalData(PersonalDataErased),
}
