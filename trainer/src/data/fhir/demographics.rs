//! What a Patient, a RelatedPerson and a Person share: their demographic elements (name, telecom,
//! address, birth date, identifiers, photo) as identifier findings and own values (a photo's `title`
//! among them: a file title often holds the name), and the identifying extensions on their
//! sub-elements (`name[].extension`, `telecom[].extension`, `contact[].extension`, a primitive's
//! `_birthDate.extension`, ...), read by the same rules as the resource's own extensions
//! ([`identifying_extensions`]).

use super::{extension_own_values, from_line, identifying_extensions, own_values, present, strings, LineOut};
use crate::data::guard::IdentifierKind;

/// A person resource's demographic elements, as read from its line.
pub(super) struct Demographics<'v> {
    pub name: &'v Option<serde_json::Value>,
    pub telecom: &'v Option<serde_json::Value>,
    pub address: &'v Option<serde_json::Value>,
    pub birth_date: &'v Option<serde_json::Value>,
    pub identifier: &'v Option<serde_json::Value>,
    /// Attachments: a face image identifies whatever its URL or data
    pub photo: &'v Option<serde_json::Value>,
}

/// The findings of `d` (one per element present) and the values of its names, phones, e-mails,
/// addresses and identifiers, to search for in notes.
pub(super) fn demographics(
    d: &Demographics,
    resource: &'static str,
    out: &mut LineOut,
    own: &mut Vec<(IdentifierKind, String)>,
) {
    for (v, kind, field) in [
        (d.name, IdentifierKind::Name, "name"),
        (d.telecom, IdentifierKind::Telecom, "telecom"),
        (d.address, IdentifierKind::Address, "address"),
        (d.birth_date, IdentifierKind::BirthDate, "birthDate"),
        (d.identifier, IdentifierKind::PatientIdentifier, "identifier"),
        (d.photo, IdentifierKind::Photo, "photo"),
    ] {
        if present(v) {
            out.identifiers.push((kind, resource, field));
        }
    }
    own_values(d.name, IdentifierKind::Name, own);
    own_values(d.telecom, IdentifierKind::Telecom, own);
    own_values(d.address, IdentifierKind::Address, own);
    own_values(d.identifier, IdentifierKind::PatientIdentifier, own);
    photo_titles(d.photo, own);
}

/// The titles of photos (Attachments), and each without its file extension (`Kagawa_Ken.jpg`): a
/// file title often holds the person's name, and a note may write it.
fn photo_titles(photo: &Option<serde_json::Value>, own: &mut Vec<(IdentifierKind, String)>) {
    let Some(photo) = photo else { return };
    let mut titles = Vec::new();
    strings(photo, &["title"], &mut titles, 0);
    for title in titles {
        own.push((IdentifierKind::Photo, title.to_owned()));
        let stem = title.rsplit_once('.').filter(|(stem, ext)| {
            !stem.trim().is_empty() && (1..=5).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if let Some((stem, _)) = stem {
            own.push((IdentifierKind::Photo, stem.to_owned()));
        }
    }
}

/// The elements whose extensions are findings under their own field (`name.extension`), in a
/// resource and in a contained Patient; an extension in any other element is `element.extension`.
const SUB_ELEMENTS: &[(&str, &str, &str)] = &[
    ("name", "name.extension", "contained.name.extension"),
    ("telecom", "telecom.extension", "contained.telecom.extension"),
    ("address", "address.extension", "contained.address.extension"),
    ("contact", "contact.extension", "contained.contact.extension"),
    ("identifier", "identifier.extension", "contained.identifier.extension"),
    ("photo", "photo.extension", "contained.photo.extension"),
    ("_birthDate", "_birthDate.extension", "contained._birthDate.extension"),
];
const OTHER_ELEMENT: (&str, &str) = ("element.extension", "contained.element.extension");

/// The field a finding of a sub-element's extension ([`SUB_ELEMENTS`]) has in a contained resource.
pub(super) fn contained_sub_element_field(field: &str) -> Option<&'static str> {
    SUB_ELEMENTS.iter().map(|&(_, f, cf)| (f, cf)).chain([OTHER_ELEMENT]).find(|(f, _)| *f == field).map(|(_, cf)| cf)
}

/// The keys whose extensions are read elsewhere: the resource's own (`extension`,
/// `modifierExtension`), its contained resources' (each their own resource) and its narrative.
const NOT_SUB_ELEMENTS: &[&str] = &["resourceType", "extension", "modifierExtension", "contained", "text"];

/// The extension lists anywhere in `v` (an element and its parts: a HumanName's, a primitive's
/// `_family`), not the lists nested in an extension, which [`identifying_extensions`] walks itself.
fn extension_lists<'v>(v: &'v serde_json::Value, out: &mut Vec<Option<&'v serde_json::Value>>, depth: usize) {
    use serde_json::Value;
    if depth > 16 {
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "extension" || k == "modifierExtension" {
                    out.push(Some(x));
                } else {
                    extension_lists(x, out, depth + 1);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| extension_lists(x, out, depth + 1)),
        _ => {}
    }
}

/// The identifying extensions of a resource's sub-elements ([`SUB_ELEMENTS`]): (kind, field, contained
/// field) findings, and their values added to `own`.
pub(super) fn sub_element_extensions(
    resource: &serde_json::Map<String, serde_json::Value>,
    mut found: impl FnMut(IdentifierKind, &'static str, &'static str),
    own: &mut Vec<(IdentifierKind, String)>,
) {
    for (key, element) in resource.iter().filter(|(k, _)| !NOT_SUB_ELEMENTS.contains(&k.as_str())) {
        let (field, contained_field) =
            SUB_ELEMENTS.iter().find(|(k, _, _)| k == key).map_or(OTHER_ELEMENT, |&(_, f, cf)| (f, cf));
        let mut lists = Vec::new();
        extension_lists(element, &mut lists, 0);
        for x in identifying_extensions(&lists) {
            found(x.kind, field, contained_field);
            extension_own_values(&x, own);
        }
    }
}

/// [`sub_element_extensions`] of a resource's line, when it has an extension at all (a byte search
/// first: most lines have none), as findings of `resource`.
pub(super) fn line_sub_element_extensions(
    line: &[u8],
    resource: &'static str,
    out: &mut LineOut,
    own: &mut Vec<(IdentifierKind, String)>,
) {
    static EXTENSION: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"xtension\""));
    if EXTENSION.find(line).is_none() {
        return;
    }
    let Ok(map) = from_line::<serde_json::Map<String, serde_json::Value>>(line) else { return };
    sub_element_extensions(&map, |kind, field, _| out.identifiers.push((kind, resource, field)), own);
}

/// What a RelatedPerson or Person says of itself: its demographics, its identifying extensions (its own
/// and its sub-elements') and its narrative, as findings of `resource`; the values its related
/// patients' notes must not show are added to `own` (the narrative is searched for them too).
pub(super) fn person_findings(
    d: &Demographics,
    extensions: [Option<&serde_json::Value>; 2],
    narrative: Option<&str>,
    line: &[u8],
    resource: &'static str,
    out: &mut LineOut,
    own: &mut Vec<(IdentifierKind, String)>,
) {
    demographics(d, resource, out, own);
    for x in identifying_extensions(&extensions) {
        out.identifiers.push((x.kind, resource, x.field));
        extension_own_values(&x, own);
    }
    line_sub_element_extensions(line, resource, out, own);
    if let Some(div) = narrative {
        super::narrative_identifiers(div, own, resource, out);
    }
}
