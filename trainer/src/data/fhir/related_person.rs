//! RelatedPerson (R4): a relative, guardian or carer of a patient. Nothing of it is kept; its name,
//! telecom, address, birth date, identifiers, photo, identifying extensions (its own and its
//! sub-elements') and narrative are identifier findings of `RelatedPerson` (HIPAA Safe Harbor lists
//! the identifiers of relatives and household members), and its name, phones, e-mails, addresses and identifiers become identifiers of the patient
//! it names (`RelatedPerson.patient`), searched for and redacted in that patient's notes as the
//! patient's own are. Files named `RelatedPerson*` are read first with the `Patient*` files for that.
//! A RelatedPerson contained in another resource is read the same way (`super::contained_person`).

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

/// A RelatedPerson line (or a contained RelatedPerson, `container` the id of the Patient that holds
/// it, whom its patient reference `#` names). Its findings are counted whatever its patient; a
/// patient reference that is missing or names no Patient (a Group, a logical reference, `#` in a
/// resource that is no Patient) makes it unusable (`no_patient_subject`) as it does an Observation,
/// and its values are then no one's to redact.
pub(super) fn related_person<'l>(line: &'l [u8], container: Option<&str>) -> std::result::Result<LineOut<'l>, Bad> {
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
    let holder = r.patient.as_ref().and_then(|p| p.reference.as_deref()).is_some_and(|s| s.trim() == "#");
    let patient = if holder {
        container.map(str::to_owned)
    } else {
        r.patient.as_ref().and_then(subject_id).map(|p| p.into_owned())
    };
    let Some(patient) = patient else {
        return Ok(out.unusable("no_patient_subject", RESOURCE, "patient"));
    };
    out.related_patients.push((RESOURCE, patient.clone()));
    if !own.is_empty() {
        out.own.push((patient, own));
    }
    Ok(out)
}
