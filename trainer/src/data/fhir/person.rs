//! Person (R4): the demographics of a human being, linked to the records that concern them
//! (`link[].target`: Patient, RelatedPerson, Practitioner or another Person). Nothing of it is kept;
//! its name, telecom, address, birth date, identifiers, photo, identifying extensions and narrative
//! are identifier findings of `Person`, and its names, phones, e-mails, addresses and identifiers are
//! identifiers of every Patient it links, searched for and redacted in their notes as their own are.
//! Files named `Person*` are read first with the `Patient*` files for that. A link to a Patient that
//! is no subject of the export is counted (`person_link_without_patient`).

use super::demographics::{person_findings, Demographics};
use super::{from_line, invalid_at, subject_id, Bad, LineOut, Narrative, Reference};
use serde::Deserialize;

const RESOURCE: &str = "Person";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Person<'a> {
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
    #[serde(default, borrow)]
    link: Vec<PersonLink<'a>>,
}

#[derive(Deserialize)]
struct PersonLink<'a> {
    #[serde(borrow)]
    target: Option<Reference<'a>>,
}

/// A Person line. Its findings are counted whatever it links; its values are the own identifiers
/// of each Patient it links within the export (`Patient/id`, `urn:uuid:`, as `Patient.link` reads
/// them: an absolute URL names a record of another system, whose id may be another person's here).
pub(super) fn person(line: &[u8]) -> std::result::Result<LineOut<'_>, Bad> {
    let p: Person = from_line(line).map_err(|_| invalid_at::<Person>(line, "not a valid Person"))?;
    let mut out = LineOut { resource: Some(RESOURCE), ..Default::default() };
    let mut own = Vec::new();
    let d = Demographics {
        name: &p.name,
        telecom: &p.telecom,
        address: &p.address,
        birth_date: &p.birth_date,
        identifier: &p.identifier,
        photo: &p.photo,
    };
    let extensions = [p.extension.as_ref(), p.modifier_extension.as_ref()];
    let narrative = p.text.as_ref().and_then(|t| t.div.as_deref());
    person_findings(&d, extensions, narrative, line, RESOURCE, &mut out, &mut own);
    let mut patients: Vec<String> = Vec::new();
    for target in p.link.iter().filter_map(|l| l.target.as_ref()) {
        if target.display.is_some() {
            out.identifiers.push((crate::data::guard::IdentifierKind::Name, RESOURCE, "link.target.display"));
        }
        let within = target.reference.as_deref().is_some_and(|s| {
            let s = s.trim();
            s.starts_with("Patient/") || s.starts_with("urn:uuid:")
        });
        if let Some(id) = subject_id(target).filter(|_| within) {
            if !patients.iter().any(|x| *x == id) {
                patients.push(id.into_owned());
            }
        }
    }
    for patient in patients {
        out.related_patients.push((RESOURCE, patient.clone()));
        if !own.is_empty() {
            out.own.push((patient, own.clone()));
        }
    }
    Ok(out)
}
