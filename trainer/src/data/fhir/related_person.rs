//! RelatedPerson (R4): a relative, guardian or carer of a patient. Nothing of it is kept; its name,
//! telecom, address, birth date, identifiers, photo, identifying extensions (its own and its
//! sub-elements') and narrative are identifier findings of `RelatedPerson` (HIPAA Safe Harbor lists
//! the identifiers of relatives and household members), and its name, phones, e-mails, addresses and identifiers become identifiers of the patient
//! it names (`RelatedPerson.patient`), searched for and redacted in that patient's notes as the
//! patient's own are. Files named `RelatedPerson*` are read first with the `Patient*` files for that.

use super::demographics::{person_findings, Demographics};
use super::{from_line, invalid_at, subject_id, Bad, LineOut, Narrative, Reference};
use crate::data::guard::IdentifierKind;
use serde::Deserialize;

const RESOURCE: &str = "RelatedPerson";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelatedPerson<'a> {
    #[serde(borrow)]
    patient: Option<Reference<'a>>,
    name: Option<serde_json::Value>,
    telecom: Option<serde_json::Value>,
    address: Option<serde_json::Value>,
    birth_date: Option<serde_json::Value>,
    identifier: Option<serde_json::Value>,
    photo: Option<serde_json::Value>,
    extension: Option<serde_json::Value>,
    modifier_extension: Option<serde_json::Value>,
    #[serde(borrow)]
    text: Option<Narrative<'a>>,
}

/// A RelatedPerson line. Its findings are counted whatever its patient; a patient reference that is
/// missing or names no Patient (a Group, a contained or logical reference) makes it unusable
/// (`no_patient_subject`) as it does an Observation, and its values are then no one's to redact.
pub(super) fn related_person(line: &[u8]) -> std::result::Result<LineOut<'_>, Bad> {
    let r: RelatedPerson =
        from_line(line).map_err(|_| invalid_at::<RelatedPerson>(line, "not a valid RelatedPerson"))?;
    let mut out = LineOut { resource: Some(RESOURCE), ..Default::default() };
    let mut own = Vec::new();
    let d = Demographics {
        name: &r.name,
        telecom: &r.telecom,
        address: &r.address,
        birth_date: &r.birth_date,
        identifier: &r.identifier,
        photo: &r.photo,
    };
    let extensions = [r.extension.as_ref(), r.modifier_extension.as_ref()];
    let narrative = r.text.as_ref().and_then(|t| t.div.as_deref());
    person_findings(&d, extensions, narrative, line, RESOURCE, &mut out, &mut own);
    if r.patient.as_ref().is_some_and(|p| p.display.is_some()) {
        out.identifiers.push((IdentifierKind::Name, RESOURCE, "patient.display"));
    }
    let Some(patient) = r.patient.as_ref().and_then(subject_id) else {
        return Ok(out.unusable("no_patient_subject", RESOURCE, "patient"));
    };
    out.related_patients.push((RESOURCE, patient.clone().into_owned()));
    if !own.is_empty() {
        out.own.push((patient.into_owned(), own));
    }
    Ok(out)
}
