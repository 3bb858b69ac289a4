//! Person (R4): the demographics of a human being, linked to the records that concern them
//! (`link[].target`: Patient, RelatedPerson, Practitioner or another Person). Nothing of it is kept;
//! its name, telecom, address, birth date, identifiers, photo, identifying extensions and narrative
//! are identifier findings of `Person`, and its names, phones, e-mails, addresses and identifiers are
//! identifiers of every Patient it links, searched for and redacted in their notes as their own are.
//! Files named `Person*` are read first with the `Patient*` files for that. A link to a Patient that
//! is no subject of the export is counted (`person_link_without_patient`); a link to a Practitioner,
//! a RelatedPerson or another Person is not (by its relative reference, its `type`, or, for a
//! `urn:uuid:` reference, the id of such a resource in the export).

use super::demographics::{person_findings, Demographics};
use super::{from_line, invalid_at, subject_id, Bad, LineOut, Narrative, Reference, Str};
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
    target: Option<Target<'a>>,
}

/// A link's target: a Reference and its `type` (the resource type it names, R4), read here only.
#[derive(Deserialize)]
struct Target<'a> {
    #[serde(borrow)]
    reference: Option<Str<'a>>,
    #[serde(borrow)]
    display: Option<Str<'a>>,
    #[serde(rename = "type", borrow)]
    type_: Option<Str<'a>>,
}

/// Where a link's target is: a Patient of the export, by its id.
enum Linked<'t> {
    /// `Patient/id`, or `urn:uuid:id` of `type` Patient
    Patient(std::borrow::Cow<'t, str>),
    /// `urn:uuid:id`, with no `type`: a Patient, unless the export's resource of that id is another
    /// type (a Practitioner's, found at the end of the read)
    Uuid(std::borrow::Cow<'t, str>),
    /// `#`: the resource that contains this Person, when that is a Patient
    Container,
}

/// The Patient a link names within the export (`Patient/id`, `urn:uuid:`, as `Patient.link` reads
/// them: an absolute URL names a record of another system, whose id may be another person's here);
/// `None` for a link to another type (`Practitioner/dr1`, or a `type` that is not `Patient`).
fn linked<'t>(target: &Target<'t>) -> Option<Linked<'t>> {
    let s = target.reference.as_deref()?.trim();
    let typed_other = target.type_.as_deref().is_some_and(|t| {
        let t = t.trim();
        t != "Patient" && !t.ends_with("/Patient")
    });
    if typed_other {
        return None;
    }
    if s == "#" {
        return Some(Linked::Container);
    }
    let as_reference = Reference { reference: target.reference.clone(), display: None, identifier: None };
    if s.starts_with("Patient/") {
        subject_id(&as_reference).map(Linked::Patient)
    } else if s.starts_with("urn:uuid:") {
        // a `type` here says Patient: no other resource of the export is looked for
        let typed = target.type_.is_some();
        subject_id(&as_reference).map(if typed { Linked::Patient } else { Linked::Uuid })
    } else {
        None
    }
}

/// A Person line (or a contained Person, `container` the id of the Patient that holds it). Its
/// findings are counted whatever it links; its values are the own identifiers of each Patient it
/// links within the export ([`linked`]).
pub(super) fn person<'l>(line: &'l [u8], container: Option<&str>) -> std::result::Result<LineOut<'l>, Bad> {
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
        let id = match linked(target) {
            Some(Linked::Patient(id)) => id.into_owned(),
            Some(Linked::Uuid(id)) => {
                out.uuid_links.push(id.clone().into_owned());
                id.into_owned()
            }
            Some(Linked::Container) => match container {
                Some(id) => id.to_owned(),
                None => continue,
            },
            None => continue,
        };
        if !patients.contains(&id) {
            patients.push(id);
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
