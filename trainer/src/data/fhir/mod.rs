//! FHIR R4 Bulk Data export reader: `*.ndjson` and `*.ndjson.gz`, one resource per line; and FHIR JSON
//! documents (`*.json`, `*.json.gz`: a Bundle per file, as Synthea writes a patient's record), read
//! where a directory has no NDJSON. A Bundle's entries (on a line, or in a document) are read as lines
//! of their own ([`bundle`]).
//!
//! Streaming: a file is read in blocks of whole lines, the lines of a block are parsed in parallel
//! (while the block before is applied), and their results are applied in line order, so memory is
//! bounded by the blocks and the output, and the result does not depend on the thread count. A parsed
//! line borrows its strings from the block: an event costs no allocation until it is interned.
//!
//! - Observation (category `laboratory` or a lab section of HL7 v2-0074 such as `LAB`, or no category
//!   and a code of the lab catalogue; `vital-signs` when the options ask; the others counted as
//!   `no_category` or `skipped_category`): the code from `code.coding[]` by the options' system preference, else the
//!   first coding; `valueQuantity`, or a coded or ordinal result (`valueCodeableConcept`, a `valueString`
//!   such as "2+" or "陰性") as a `coded` event with its ordinal level; time
//!   from `effectiveDateTime`, `effectivePeriod.start`, `effectiveInstant`, then `issued`.
//! - DocumentReference: `content[].attachment` with a `text/plain`, `text/html` or `text/rtf` content
//!   type and base64 `data`, in the content type's charset (UTF-8 by default; Shift_JIS, EUC-JP,
//!   ISO-2022-JP are decoded); HTML and RTF as their text ([`rtf`]). Data in a Binary: one contained
//!   in the resource (`url: "#id"`), one of the Bundle that holds the resource, one of the export
//!   (`Binary/id`, read after the other resources, [`UrlNote`]); a link to anything else is said.
//!   Attachment titles are scanned.
//! - OperationOutcome (an export's error file, a search's outcome entry): counted as a warning.
//! - DiagnosticReport (a radiology or pathology report): `presentedForm` in text (plain, HTML, RTF) as a
//!   DocumentReference's attachments, and `conclusion`, as one note; one that a DocumentReference of
//!   the same subject and time also holds (Synthea writes both) is read once. A report's results
//!   written inside it (`contained` Observations) are read as Observations.
//! - Composition: each section's title and `text.div` (XHTML) as plain text, one note per resource.
//! - Encounter: `class` (R4 Coding, or R5 CodeableConcepts) and `period`.
//! - Patient: the direct identifiers the guard refuses (name, telecom, address, birthDate, identifier,
//!   photo, contact; the extension mothersMaidenName, and any extension, nested or modifier, whose value is a
//!   HumanName, ContactPoint, Address or Identifier; its narrative `text.div` is scanned) and
//!   the site (`managingOrganization`). The values of its names, phones, e-mails, addresses and
//!   identifiers are kept as hashes ([`guard::subject`]) and searched for in the subject's notes: files
//!   named `Patient*` are read first for that, and notes read before their Patient resource (a Patient
//!   in a file of another name) are checked at the end when events are kept, or by a second pass over
//!   the input when they are not (`data check`).
//! - RelatedPerson: its identifying fields are findings, and its name, telecom, address and identifiers
//!   are searched for in its patient's notes as the patient's own ([`related_person`]); a Person's so
//!   for each Patient it links ([`person`]). So are those contained in a resource (`contained`; their
//!   `#` names the Patient that holds them), their findings the holder's under `contained.` fields.
//! - The extensions of a person's sub-elements (`name[].extension`, `contact[].extension`,
//!   `_birthDate.extension`, ...) by the rules of its own extensions, and its `photo` (an image of a
//!   face): findings ([`demographics`]).
//! - `Observation.note`, `Observation.valueString` and `DocumentReference.description` are free text:
//!   scanned by the guard, searched for the subject's own identifiers as notes are (by the second pass
//!   when its Patient comes after them), and not kept (an annotation of a measurement or a document's
//!   title is not part of the notes a model reads).
//!
//! Other resource types are counted and skipped.

use super::check::Severity;
use super::guard::{self, IdentifierKind};
use super::{catalog, reportable, time, EventKind, ReadOptions, Rec};
use base64::Engine;
use serde::de::IgnoredAny;
use serde::Deserialize;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;

mod demographics;
mod person;
mod related_person;
mod rtf;
mod stream;
mod text;
pub use rtf::rtf_to_text;
pub use stream::{read, read_file, read_line};
use text::decode_text;
pub use text::xhtml_to_text;

/// A JSON string, borrowed from the line when it holds no escapes. (serde borrows a `Cow<str>` only
/// when it is a field's own type: inside an `Option` it is always an owned copy.)
#[derive(Clone)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visitor).map(Str)
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A value read as a string where it is one (a number as its digits), and as none where it is anything
/// else, never an error: for the elements read only to tell versions apart (`id`, `meta`), which an
/// export may write as a number or an object, and which must not make a resource that reads without
/// them malformed.
#[derive(Default)]
struct Loose<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
                Ok(Loose(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Loose(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E> {
                Ok(Loose(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(Loose(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(Loose(None))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(Loose(None))
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(Loose(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> std::result::Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose(None))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A resource's `meta`, for what tells its versions apart (`versionId`, `lastUpdated`), read as
/// [`Loose`] is: a `meta` of another shape, or a key given twice, is no error.
#[derive(Default)]
struct VersionMeta<'a> {
    version_id: Option<Cow<'a, str>>,
    last_updated: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for VersionMeta<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = VersionMeta<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> std::result::Result<Self::Value, A::Error> {
                let mut m = VersionMeta::default();
                while let Some(key) = a.next_key::<Loose>()? {
                    match key.0.as_deref() {
                        Some("versionId") => m.version_id = a.next_value::<Loose>()?.0,
                        Some("lastUpdated") => m.last_updated = a.next_value::<Loose>()?.0,
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(m)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(VersionMeta::default())
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(VersionMeta::default())
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
                Ok(VersionMeta::default())
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
                Ok(VersionMeta::default())
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(VersionMeta::default())
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(VersionMeta::default())
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(VersionMeta::default())
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The string of an optional field, `""` when absent, still borrowed from the line.
fn cow<'a>(s: &Option<Str<'a>>) -> Cow<'a, str> {
    s.as_ref().map_or(Cow::Borrowed(""), |s| s.0.clone())
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<Str<'a>>,
}

#[derive(Deserialize, Default)]
struct Reference<'a> {
    #[serde(borrow)]
    reference: Option<Str<'a>>,
    #[serde(borrow)]
    display: Option<Str<'a>>,
    /// a logical reference's identifier (`{"identifier": {"value": "MRN7654321"}}`): not read, found
    #[serde(default)]
    identifier: Option<serde::de::IgnoredAny>,
}

/// The identifier findings of a subject reference: its `display` (a name) and a logical reference's
/// `identifier` (a medical record number).
fn reference_identifiers(r: &Reference, resource: &'static str, out: &mut LineOut) {
    if r.display.is_some() {
        out.identifiers.push((IdentifierKind::Name, resource, "subject.display"));
    }
    if r.identifier.is_some() {
        out.identifiers.push((IdentifierKind::PatientIdentifier, resource, "subject.identifier"));
    }
}

#[derive(Deserialize)]
struct Coding<'a> {
    #[serde(borrow)]
    system: Option<Str<'a>>,
    #[serde(borrow)]
    code: Option<Str<'a>>,
    /// (read for a coded result's `ordinalValue`, [`coded_level`]; kept unparsed)
    #[serde(default, borrow)]
    extension: Option<&'a serde_json::value::RawValue>,
}

/// The level a coding's `ordinalValue` extension (R4's `itemWeight` too) gives it, as JP Core's health
/// checkup results give their answer codes (found by a tester: such results were dropped).
fn ordinal_extension(k: &Coding) -> Option<f32> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Ext<'a> {
        #[serde(borrow)]
        url: Option<Str<'a>>,
        value_decimal: Option<f64>,
        value_integer: Option<i64>,
    }
    let exts: Vec<Ext> = serde_json::from_str(k.extension?.get()).ok()?;
    exts.iter()
        .filter(|e| e.url.as_deref().is_some_and(|u| u.ends_with("/ordinalValue") || u.ends_with("/itemWeight")))
        .find_map(|e| e.value_decimal.or(e.value_integer.map(|i| i as f64)))
        .map(|v| v as f32)
        .filter(|v| v.is_finite())
}

/// The codings of a concept: most hold one or two (LOINC and JLAC10), kept inline.
type Codings<'a> = SmallVec<[Coding<'a>; 2]>;

#[derive(Deserialize, Default)]
struct Concept<'a> {
    #[serde(default, borrow)]
    coding: Codings<'a>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

/// A concept whose `text` is not read (an Observation's code and category): skipped unparsed.
#[derive(Deserialize, Default)]
struct Coded<'a> {
    #[serde(default, borrow)]
    coding: Codings<'a>,
}

#[derive(Deserialize)]
struct Quantity<'a> {
    value: Option<Decimal>,
    /// the system of `code` (UCUM's, or another's)
    #[serde(borrow)]
    system: Option<Str<'a>>,
    /// `<`, `<=`, `>=`, `>` (a result past a limit of detection), `ad` (R5: "sufficient to achieve")
    #[serde(borrow)]
    comparator: Option<Str<'a>>,
    #[serde(borrow)]
    unit: Option<Str<'a>>,
    #[serde(borrow)]
    code: Option<Str<'a>>,
}

#[derive(Deserialize, Default)]
struct Period<'a> {
    #[serde(borrow)]
    start: Option<Str<'a>>,
    #[serde(borrow)]
    end: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Observation<'a> {
    #[serde(default, borrow)]
    id: Loose<'a>,
    #[serde(default, borrow)]
    meta: VersionMeta<'a>,
    /// the narrative (generated from the data, or written by hand): scanned, not kept
    #[serde(borrow)]
    text: Option<Narrative<'a>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(default, borrow)]
    category: SmallVec<[Coded<'a>; 1]>,
    #[serde(borrow)]
    code: Option<Coded<'a>>,
    #[serde(borrow)]
    value_quantity: Option<Quantity<'a>>,
    #[serde(borrow)]
    value_string: Option<Str<'a>>,
    value_integer: Option<i64>,
    #[serde(borrow)]
    value_codeable_concept: Option<Concept<'a>>,
    #[serde(borrow)]
    effective_date_time: Option<Str<'a>>,
    #[serde(borrow)]
    effective_period: Option<Period<'a>>,
    #[serde(borrow)]
    effective_instant: Option<Str<'a>>,
    #[serde(borrow)]
    issued: Option<Str<'a>>,
    #[serde(default, borrow)]
    component: Vec<Component<'a>>,
    #[serde(default, borrow)]
    note: Vec<Annotation<'a>>,
    // value[x] types the reader does not read (a series needs one number): named when they are the
    // value, so they are not counted as a missing one
    value_ratio: Option<IgnoredAny>,
    value_range: Option<IgnoredAny>,
    value_sampled_data: Option<IgnoredAny>,
    value_boolean: Option<IgnoredAny>,
    value_period: Option<IgnoredAny>,
    value_time: Option<IgnoredAny>,
    value_date_time: Option<IgnoredAny>,
    value_attachment: Option<IgnoredAny>,
    /// a panel's results as Observations of their own (`hasMember`): a panel without a value of its own
    /// is no missing value
    has_member: Option<IgnoredAny>,
    /// why the value is absent (R4's obs-6: only where it is): beside a value, which to believe is not
    /// known
    data_absent_reason: Option<IgnoredAny>,
}

impl Observation<'_> {
    /// The value[x] element of a type not read, when the Observation has one.
    fn unread_value(&self) -> Option<&'static str> {
        [
            (self.value_ratio.is_some(), "valueRatio"),
            (self.value_range.is_some(), "valueRange"),
            (self.value_sampled_data.is_some(), "valueSampledData"),
            (self.value_boolean.is_some(), "valueBoolean"),
            (self.value_period.is_some(), "valuePeriod"),
            (self.value_time.is_some(), "valueTime"),
            (self.value_date_time.is_some(), "valueDateTime"),
            (self.value_attachment.is_some(), "valueAttachment"),
        ]
        .into_iter()
        .find_map(|(has, name)| has.then_some(name))
    }
}

/// An Annotation (`Observation.note`): free text.
#[derive(Deserialize)]
struct Annotation<'a> {
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

/// A component of a panel Observation (blood pressure: systolic and diastolic).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Component<'a> {
    #[serde(borrow)]
    code: Option<Coded<'a>>,
    #[serde(borrow)]
    value_quantity: Option<Quantity<'a>>,
    #[serde(borrow)]
    value_string: Option<Str<'a>>,
    value_integer: Option<i64>,
    value_codeable_concept: Option<serde::de::IgnoredAny>,
}

/// A FHIR decimal: a JSON number, or a string that holds one (`"1.1"`, as some converters write every
/// value; FHIR does not allow it: read, and counted by the caller).
#[derive(Clone, Copy)]
struct Decimal {
    value: f64,
    quoted: bool,
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Decimal;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Decimal, E> {
                Ok(Decimal { value: v, quoted: false })
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Decimal, E> {
                Ok(Decimal { value: v as f64, quoted: false })
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Decimal, E> {
                Ok(Decimal { value: v as f64, quoted: false })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Decimal, E> {
                // a plain decimal only (`1.1`, `-0.5`, `1e3`): not `NaN`, `inf`, `1,5` or text
                let t = v.trim();
                let plain = !t.is_empty()
                    && t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
                    && t.bytes().any(|b| b.is_ascii_digit());
                match t.parse::<f64>() {
                    Ok(value) if plain && value.is_finite() => Ok(Decimal { value, quoted: true }),
                    // full-width digits (`１．２５`), as Japanese converters write them
                    _ => match numeric_string(t) {
                        Some(v) => Ok(Decimal { value: f64::from(v), quoted: true }),
                        None => Err(E::invalid_type(serde::de::Unexpected::Other("text"), &self)),
                    },
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// (value, unit) of a quantity: NaN and none where absent; the UCUM `code` before the display `unit`
/// (a `code` of another system, SNOMED CT or a local one, is no UCUM unit: then the `unit` text).
fn quantity<'a>(q: &Option<Quantity<'a>>) -> (f32, Option<Cow<'a, str>>) {
    match q {
        None => (f32::NAN, None),
        Some(q) => {
            let ucum = q.system.as_deref().is_none_or(|s| s == "http://unitsofmeasure.org");
            let code = q.code.as_ref().filter(|_| ucum);
            (
                q.value.map_or(f32::NAN, |v| v.value as f32),
                code.or(q.unit.as_ref()).filter(|u| !u.is_empty()).map(|u| u.0.clone()),
            )
        }
    }
}

/// A `valueString` that is a plain number ("1.0", "１２．５", " 7 "), as SS-MIX2-derived exports write
/// numeric results: its value; `None` for anything else (an ordinal, a comparator, text). The MEDS
/// reader reads its text results with it too.
pub(crate) fn numeric_string(s: &str) -> Option<f32> {
    let folded: String = s
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            '．' => '.',
            '－' | '−' => '-',
            c => c,
        })
        .collect();
    let plain = !folded.is_empty()
        && folded.len() <= 32
        && folded.trim_start_matches('-').chars().all(|c| c.is_ascii_digit() || c == '.')
        && folded.chars().any(|c| c.is_ascii_digit());
    plain.then(|| folded.parse::<f32>().ok()).flatten().filter(|v| v.is_finite())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attachment<'a> {
    #[serde(borrow)]
    content_type: Option<Str<'a>>,
    #[serde(borrow)]
    data: Option<Str<'a>>,
    /// where the data is when it is not inline: `#id` a Binary contained in the resource, `Binary/id`
    /// a Binary of the export (read after the other resources, [`UrlNote`]), a page elsewhere (not
    /// read: said)
    #[serde(borrow)]
    url: Option<Str<'a>>,
    /// free text (a document's title may name the patient): scanned, not kept
    #[serde(borrow)]
    title: Option<Str<'a>>,
}

/// A note whose text is in a Binary of the export that is not in its own line (an attachment's `url`
/// names `Binary/id`, as EHR bulk exports write notes and their Binaries): read when the export's
/// Binaries are, after the other resources ([`stream::read`]).
pub(crate) struct UrlNote {
    /// the resource whose note it is: a DocumentReference's `content[].attachment` or a
    /// DiagnosticReport's `presentedForm`
    resource: &'static str,
    subject: String,
    time: i64,
    system: String,
    code: String,
    /// the Binaries that may hold its text: (id, the attachment's content type, `""` when it gives
    /// none)
    links: Vec<(String, String)>,
    /// its resource's version, told apart from the other versions when the note is read
    version: Option<Version>,
    /// text the resource gives beside its links (a DiagnosticReport's `conclusion`, guarded): added to
    /// the Binaries' text where that does not already hold it, the note where they have none
    also: Option<String>,
}

impl UrlNote {
    /// The fields of its resource that hold the note's (data, content type).
    pub(crate) fn fields(&self) -> (&'static str, &'static str) {
        match self.resource {
            "DiagnosticReport" => ("presentedForm.data", "presentedForm.contentType"),
            _ => ("content.attachment.data", "content.attachment.contentType"),
        }
    }
}

/// (no subject, time or id in a debug print)
impl std::fmt::Debug for UrlNote {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "UrlNote({} links)", self.links.len())
    }
}

/// The key of the Binary an attachment's `url` names: its id for `Binary/123`,
/// `https://host/fhir/Binary/123` (a version `/_history/2`, a query or a fragment after it), the uuid
/// for `urn:uuid:...` (a Bundle entry's `fullUrl`); `None` when it names no Binary.
fn binary_key(url: &str) -> Option<&str> {
    let url = url.trim();
    if let Some(uuid) = url.strip_prefix("urn:uuid:") {
        return (!uuid.is_empty()).then_some(uuid);
    }
    // the path only: a query may hold another url (`?next=/Binary/zzz`)
    let url = &url[..url.find(['?', '#']).unwrap_or(url.len())];
    let i = url.rfind("Binary/")?;
    if i > 0 && !url[..i].ends_with('/') {
        return None;
    }
    let rest = &url[i + 7..];
    let (id, after) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let version = after.strip_prefix("/_history/").is_some_and(|v| !v.is_empty() && !v.contains('/'));
    (!id.is_empty() && (after.is_empty() || version)).then_some(id)
}

/// A Binary resource: read for the notes that link it ([`UrlNote`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BinaryResource<'a> {
    #[serde(borrow)]
    resource_type: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    content_type: Option<Str<'a>>,
    #[serde(borrow)]
    data: Option<Str<'a>>,
}

/// A Binary that is an entry of a Bundle (a document, as servers and Synthea write them, or a line
/// of one): kept while the Bundle is read, for the notes of the Bundle that link it (by its id, or the
/// uuid of its entry's `fullUrl`).
pub(crate) struct BundleBinary {
    keys: SmallVec<[String; 2]>,
    content_type: Option<String>,
    data: Option<String>,
}

/// (no id or data in a debug print)
impl std::fmt::Debug for BundleBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("BundleBinary")
    }
}

/// A Binary entry of a Bundle (`full_url_id` the uuid of its `fullUrl`), counted and kept for the
/// Bundle's notes.
fn bundle_binary<'a>(line: &[u8], full_url_id: Option<&str>) -> LineOut<'a> {
    let mut out = LineOut { resource: Some("Binary"), ..Default::default() };
    if let Ok(b) = from_line::<BinaryResource>(line) {
        let mut keys: SmallVec<[String; 2]> = b.id.iter().map(|id| id.trim().to_owned()).collect();
        keys.extend(full_url_id.map(str::to_owned));
        let own = |s: Option<Str>| s.map(|s| s.0.into_owned());
        out.binary = Some(BundleBinary { keys, content_type: own(b.content_type), data: own(b.data) });
    }
    out
}

/// The forms of a note's text, in the order one is preferred to another when a note is sent in
/// several.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Form {
    Plain,
    /// `text/html`, as EHRs send notes
    Html,
    /// `text/rtf`, and `application/rtf` as Windows names it
    Rtf,
}

/// The form of text a content type says (media types are case-insensitive: `Text/Plain;
/// charset=UTF-8`); `None` for one that is not text (a PDF, an image).
fn text_form(content_type: &str) -> Option<Form> {
    let ct = content_type.trim_start();
    let is = |t: &str| ct.get(..t.len()).is_some_and(|c| c.eq_ignore_ascii_case(t));
    // (Markdown is plain text with marks: found by a tester, such notes were dropped)
    if is("text/plain") || is("text/markdown") || is("text/x-markdown") {
        Some(Form::Plain)
    } else if is("text/html") || is("application/xhtml+xml") {
        Some(Form::Html)
    } else if is("text/rtf") || is("application/rtf") || is("application/x-rtf") {
        Some(Form::Rtf)
    } else {
        None
    }
}

/// The text of an attachment's base64 `data` in form `form` and content type `ct`: an error when the
/// data is not base64 (the resource is malformed), `None` when its text does not decode (a charset
/// the reader does not know, bytes that are not in it, no RTF: `undecodable_note`); with whether its
/// charset was guessed (bytes that are not UTF-8 under a content type that names none).
fn attachment_text(form: Form, ct: &str, data: &str) -> std::result::Result<Option<(String, bool)>, Bad> {
    // base64Binary may be broken into lines (MIME style): whitespace is not data
    let data: Cow<str> = if data.contains(|c: char| c.is_ascii_whitespace()) {
        data.chars().filter(|c| !c.is_ascii_whitespace()).collect::<String>().into()
    } else {
        Cow::Borrowed(data)
    };
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(&*data).map_err(|_| "attachment data is not base64")?;
    Ok(match form {
        // RTF says its encodings itself: the content type's charset is not its text's
        Form::Rtf => rtf::rtf_to_text(&bytes).and_then(text::no_nul).ok().map(|t| (t, false)),
        Form::Html => decode_text(ct, bytes).ok().map(|(t, guessed)| (text::html_to_text(&t), guessed)),
        Form::Plain => decode_text(ct, bytes).ok(),
    })
}

/// A Binary contained in a resource (`contained`), as an attachment's `url: "#id"` names it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainedBinary {
    resource_type: Option<String>,
    id: Option<String>,
    content_type: Option<String>,
    data: Option<String>,
}

/// The Binaries contained in the resource on `line`: id -> (contentType, data).
fn contained_binaries(line: &[u8]) -> HashMap<String, (Option<String>, Option<String>)> {
    #[derive(Deserialize)]
    struct Holder {
        #[serde(default)]
        contained: Vec<serde_json::Value>,
    }
    let Ok(h) = from_line::<Holder>(line) else { return HashMap::new() };
    h.contained
        .into_iter()
        .filter_map(|c| serde_json::from_value::<ContainedBinary>(c).ok())
        .filter(|b| b.resource_type.as_deref() == Some("Binary"))
        .filter_map(|b| Some((b.id?, (b.content_type, b.data))))
        .collect()
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow)]
    attachment: Option<Attachment<'a>>,
}

#[derive(Deserialize)]
struct DocContext<'a> {
    #[serde(borrow)]
    period: Option<Period<'a>>,
}

#[derive(Deserialize)]
struct DocumentReference<'a> {
    #[serde(default, borrow)]
    id: Loose<'a>,
    #[serde(default, borrow)]
    meta: VersionMeta<'a>,
    /// the narrative (generated from the data, or written by hand): scanned, not kept
    #[serde(borrow)]
    text: Option<Narrative<'a>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    date: Option<Str<'a>>,
    /// STU3's and DSTU2's name of `date` (R4 renamed it)
    #[serde(borrow)]
    indexed: Option<Str<'a>>,
    #[serde(rename = "type", borrow)]
    type_: Option<Concept<'a>>,
    #[serde(default, borrow)]
    content: Vec<Content<'a>>,
    #[serde(borrow)]
    context: Option<DocContext<'a>>,
    #[serde(borrow)]
    description: Option<Str<'a>>,
}

/// A DiagnosticReport with text: a radiology or pathology report (JP Core's
/// `JP_DiagnosticReport_Radiology`), read as a note. One without `presentedForm` or `conclusion` (a lab
/// panel) is not parsed as this ([`diagnostic_report`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiagnosticReport<'a> {
    #[serde(default, borrow)]
    id: Loose<'a>,
    #[serde(default, borrow)]
    meta: VersionMeta<'a>,
    /// the narrative (generated from the data, or written by hand): scanned, not kept
    #[serde(borrow)]
    text: Option<Narrative<'a>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    code: Option<Concept<'a>>,
    #[serde(borrow)]
    effective_date_time: Option<Str<'a>>,
    #[serde(borrow)]
    effective_period: Option<Period<'a>>,
    #[serde(borrow)]
    issued: Option<Str<'a>>,
    #[serde(borrow)]
    conclusion: Option<Str<'a>>,
    #[serde(default, borrow)]
    presented_form: Vec<Attachment<'a>>,
}

/// A visitor's methods for the JSON scalars other than strings (booleans, numbers, null), each giving
/// `$value`: a field of another shape than the one read is skipped.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// A resource's `text`: its `div` read; any other shape (`"text": "Hb 13.2"`, as converters write it)
/// is a narrative without one, not a malformed resource (the field is only scanned).
struct Narrative<'a> {
    div: Option<Str<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Narrative<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Narrative<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Narrative")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> std::result::Result<Self::Value, M::Error> {
                let mut div = None;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if &*key == "div" && div.is_none() {
                        // a div that is no string is none
                        div = map.next_value::<Option<Lenient<Str<'de>>>>()?.and_then(|l| l.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Narrative { div })
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> std::result::Result<Self::Value, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Narrative { div: None })
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(Narrative { div: None })
            }
            scalars_are!(Narrative { div: None });
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// A value of type `T`, or `None` where the JSON holds another shape (a field only scanned).
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // (a string is read as `T`, any other shape skipped: a field of strings only scanned)
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
                T::deserialize(serde::de::value::BorrowedStrDeserializer::new(v)).map(|t| Lenient(Some(t)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                T::deserialize(serde::de::value::StringDeserializer::new(v.to_owned())).map(|t| Lenient(Some(t)))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> std::result::Result<Self::Value, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> std::result::Result<Self::Value, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            scalars_are!(Lenient(None));
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Section<'a> {
    #[serde(borrow)]
    title: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Narrative<'a>>,
    #[serde(default, borrow)]
    section: Vec<Section<'a>>,
}

#[derive(Deserialize)]
struct Composition<'a> {
    #[serde(default, borrow)]
    id: Loose<'a>,
    #[serde(default, borrow)]
    meta: VersionMeta<'a>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    date: Option<Str<'a>>,
    #[serde(rename = "type", borrow)]
    type_: Option<Concept<'a>>,
    #[serde(default, borrow)]
    section: Vec<Section<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EncounterClass<'a> {
    R4(#[serde(borrow)] Coding<'a>),
    R5(#[serde(borrow)] Vec<Concept<'a>>),
}

#[derive(Deserialize)]
struct Encounter<'a> {
    #[serde(default, borrow)]
    id: Loose<'a>,
    #[serde(default, borrow)]
    meta: VersionMeta<'a>,
    /// the narrative (generated from the data, or written by hand): scanned, not kept
    #[serde(borrow)]
    text: Option<Narrative<'a>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    class: Option<EncounterClass<'a>>,
    #[serde(borrow)]
    period: Option<Period<'a>>,
    /// FHIR R5's name of `period`
    #[serde(rename = "actualPeriod", borrow)]
    actual_period: Option<Period<'a>>,
    /// FHIR DSTU2's name of `subject` (not read: only said)
    patient: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Patient<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    name: Option<serde_json::Value>,
    telecom: Option<serde_json::Value>,
    address: Option<serde_json::Value>,
    birth_date: Option<serde_json::Value>,
    identifier: Option<serde_json::Value>,
    photo: Option<serde_json::Value>,
    contact: Option<serde_json::Value>,
    /// read for the extensions that identify ([`identifying_extensions`])
    extension: Option<serde_json::Value>,
    modifier_extension: Option<serde_json::Value>,
    #[serde(borrow)]
    text: Option<Narrative<'a>>,
    #[serde(borrow)]
    managing_organization: Option<Reference<'a>>,
    /// other Patient resources of the same person (`replaced-by`, `replaces`, `refer`, `seealso`)
    #[serde(default, borrow)]
    link: Vec<PatientLink<'a>>,
}

#[derive(Deserialize)]
struct PatientLink<'a> {
    #[serde(borrow)]
    other: Option<Reference<'a>>,
}

/// What one line gave; its events borrow from the line.
#[derive(Default)]
struct LineOut<'a> {
    /// the resource type as the QA report counts it ([`reportable::resource_type`])
    resource: Option<&'static str>,
    /// how its times were written (zone or none)
    zones: time::Zones,
    recs: SmallVec<[Rec<'a>; 1]>,
    identifiers: Vec<(IdentifierKind, &'static str, &'static str)>,
    /// (subject, site)
    site: Option<(String, String)>,
    /// a malformed line, and why
    bad: Option<&'static str>,
    /// counted, not errors: (severity, kind, resource, field), each once
    info: SmallVec<[(Severity, &'static str, &'static str, &'static str); 1]>,
    /// a Patient resource's id
    patient: Option<String>,
    /// the Patient resources a Patient links as the same person
    links: Vec<String>,
    /// a Patient's own identifiers, to search for in its notes: (subject, [(kind, value)]); a
    /// RelatedPerson's are its patient's, a Person's those of each Patient it links
    own: Vec<(String, Vec<(IdentifierKind, String)>)>,
    /// the patients a RelatedPerson or a Person names: (resource, patient)
    related_patients: Vec<(&'static str, String)>,
    /// the ids a Person links by `urn:uuid:` with no `type` ([`person`]): Patients, unless the id is
    /// one of [`LineOut::not_patient`]'s
    uuid_links: Vec<String>,
    /// the id of a resource a Person may link that is no Patient (Practitioner, PractitionerRole,
    /// RelatedPerson, Person)
    not_patient: Option<String>,
    /// free text that is scanned and not kept (`Observation.note`), to search for its subject's own
    /// identifiers too: per subject (a DiagnosticReport's contained results may name others), the
    /// subject and (resource, field of a finding, text)
    unkept: Vec<(Cow<'a, str>, Vec<(&'static str, &'static str, String)>)>,
    /// a Bundle's entries, parsed when it is applied (a `.json` document is written over many lines:
    /// each entry's line is the Bundle's and the lines its start lies below it)
    entries: Vec<Pending<'a>>,
    /// a Bundle's `DELETE` entries of resources whose versions are told apart: (type, id, rank)
    deletes: Vec<(String, String, u64)>,
    /// a note whose text is in Binaries of the export, read after the other resources
    by_url: Option<UrlNote>,
    /// a note read from the export's Binaries: its resource was counted when its line was read
    late: bool,
    /// a Binary entry of a Bundle, for the Bundle's notes that link it
    binary: Option<BundleBinary>,
    /// the resource's id and rank among its versions ([`Versions`]), for the types that give events
    version: Option<Version>,
}

impl<'a> LineOut<'a> {
    /// What a contained resource read on its own bytes gave, taken into its holder's output (owned:
    /// the bytes are the holder's copy).
    fn take_contained(&mut self, read: LineOut<'_>) {
        let own = |c: Cow<'_, str>| -> Cow<'a, str> { Cow::Owned(c.into_owned()) };
        self.zones.merge(read.zones);
        self.identifiers.extend(read.identifiers);
        for i in read.info {
            if !self.info.contains(&i) {
                self.info.push(i);
            }
        }
        for r in read.recs {
            self.recs.push(Rec {
                subject: own(r.subject),
                time: r.time,
                kind: r.kind,
                system: own(r.system),
                code: own(r.code),
                value: r.value,
                unit: r.unit.map(own),
                text: r.text,
                end: r.end,
            });
        }
        for (subject, texts) in read.unkept {
            match self.unkept.iter_mut().find(|(s, _)| **s == *subject) {
                Some((_, kept)) => kept.extend(texts),
                None => self.unkept.push((own(subject), texts)),
            }
        }
    }

    fn bad(reason: &'static str) -> Self {
        LineOut { bad: Some(reason), ..Default::default() }
    }

    /// Counts a finding of the line (once however often the line has it).
    /// A finding of `severity`, once per line.
    fn info_once(&mut self, severity: Severity, kind: &'static str, resource: &'static str, field: &'static str) {
        if !self.info.contains(&(severity, kind, resource, field)) {
            self.info.push((severity, kind, resource, field));
        }
    }

    fn found(&mut self, kind: &'static str, resource: &'static str, field: &'static str) {
        self.info_once(Severity::Info, kind, resource, field);
    }

    /// A resource whose attachments gave no text: `no_text_attachment`, unless an attachment was
    /// counted for why already (no data, a link, a charset that does not decode).
    fn no_text_attachment(&mut self, resource: &'static str, field: &'static str) {
        if !self
            .info
            .iter()
            .any(|i| matches!(i.1, "note_without_data" | "note_by_url" | "undecodable_note" | "empty_note"))
        {
            self.found("no_text_attachment", resource, field);
        }
    }

    /// A valid resource that lacks what the reader needs (a time, a patient, a code: optional in R4):
    /// counted as a warning and not read, where it was a malformed line that blocked the input.
    fn unusable(mut self, kind: &'static str, resource: &'static str, field: &'static str) -> Self {
        self.recs.clear();
        self.info.push((Severity::Warning, kind, resource, field));
        self
    }
}

/// The subject id of a reference: `Patient/123`, `https://host/fhir/Patient/123`, `urn:uuid:...`.
fn subject_id<'a>(r: &Reference<'a>) -> Option<Cow<'a, str>> {
    let whole = &r.reference.as_ref()?.0;
    let s = whole.trim();
    let id = if let Some(i) = s.rfind("Patient/") {
        &s[i + 8..]
    } else if let Some(rest) = s.strip_prefix("urn:uuid:") {
        rest
    } else {
        return None;
    };
    // a version (`/_history/2`), a query (`?_format=json`) or a fragment ends the id
    let id = id.split(['/', '?', '#']).next().unwrap_or("");
    (!id.is_empty()).then(|| part_of(whole, id))
}

/// `part` (a slice of `whole`) with the lifetime of `whole`'s input: borrowed from the line when
/// `whole` is, else copied (a string with escapes was unescaped into its own buffer).
fn part_of<'a>(whole: &Cow<'a, str>, part: &str) -> Cow<'a, str> {
    match whole {
        Cow::Borrowed(w) => {
            let start = part.as_ptr() as usize - w.as_ptr() as usize;
            Cow::Borrowed(&w[start..start + part.len()])
        }
        Cow::Owned(_) => Cow::Owned(part.to_owned()),
    }
}

/// The preferred coding of a concept: the options' systems in order, else the first coding.
fn pick<'c, 'a>(coding: &'c [Coding<'a>], opts: &ReadOptions) -> Option<&'c Coding<'a>> {
    let with_code = |k: &&Coding| k.code.as_deref().is_some_and(|c| !c.is_empty());
    // a preferred JLAC10 matches JLAC10 under any of its names
    let same = |system: &str, p: &str| {
        system == p || (catalog::JLAC10_SYSTEMS.contains(&system) && catalog::JLAC10_SYSTEMS.contains(&p))
    };
    // a local coding `read.code_map` maps is preferred as the code it is read as
    fn read_as<'k>(k: &'k Coding<'_>, opts: &ReadOptions) -> Option<&'k str> {
        let system = k.system.as_deref();
        match (&opts.code_map, k.code.as_deref()) {
            (Some(map), Some(code)) => match map.get(system.unwrap_or(""), code) {
                Some(row) => Some(map.target(row).system),
                None => system,
            },
            _ => system,
        }
    }
    opts.code_systems
        .iter()
        .find_map(|p| coding.iter().filter(with_code).find(|k| read_as(k, opts).is_some_and(|s| same(s, p))))
        .or_else(|| coding.iter().find(with_code))
}

/// Whether a concept's codings name two different tests of the catalogue (each coding a translation
/// of one test, as FHIR has them).
fn conflicting_codings(coding: &[Coding]) -> bool {
    if coding.len() < 2 {
        return false;
    }
    let mut rows = coding.iter().filter_map(|k| {
        let system = k.system.as_deref()?.trim();
        catalog::lookup_index(system.strip_suffix('/').unwrap_or(system), k.code.as_deref()?.trim())
    });
    let Some(first) = rows.next() else { return false };
    rows.any(|r| r != first)
}

fn has_code(cs: &[Coded], code: &str) -> bool {
    cs.iter().any(|c| c.coding.iter().any(|k| k.code.as_deref() == Some(code)))
}

/// The status codes of the R4 resources read (Observation, DocumentReference, DiagnosticReport,
/// Composition, Encounter).
const KNOWN_STATUSES: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "partial",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
    "current",
    "superseded",
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    // R5's Encounter statuses
    "on-hold",
    "discharged",
    "completed",
    "discontinued",
];

fn inactive(status: &Option<Str>) -> bool {
    matches!(status.as_deref(), Some("entered-in-error" | "cancelled"))
}

/// A candidate of [`first_time`]: the field's value, its name, and why a line whose time there does
/// not read is malformed (the field named, as the report says where to look).
macro_rules! at {
    ($value:expr, $field:literal) => {
        ($value, $field, concat!("unreadable time (", $field, ")"))
    };
}

/// The first of the `candidates` present, parsed; a time FHIR does not allow that other systems write
/// (`2024/01/05 08:30`, `+0900`, HL7 v2's `20240105083000`, [`time::parse_lenient`]) is read and
/// counted (`nonstandard_time`).
fn first_time(
    candidates: &[(Option<&str>, &'static str, Bad)],
    out: &mut LineOut,
) -> Option<std::result::Result<time::Stamp, Bad>> {
    let &(s, field, why) = candidates.iter().find(|c| c.0.is_some())?;
    let s = s?;
    Some(match time::parse(s) {
        Some(t) => Ok(t),
        None => match time::parse_lenient(s) {
            Some(t) => {
                out.found("nonstandard_time", out.resource.unwrap_or(reportable::OTHER_RESOURCE_TYPE), field);
                Ok(t)
            }
            None => Err(why),
        },
    })
}

/// A time read in UTC, its way of writing counted: zone-less in `read.time_zone`.
fn utc(t: time::Stamp, opts: &ReadOptions, out: &mut LineOut) -> std::result::Result<i64, Bad> {
    out.zones.add(t.written());
    t.utc(opts.zone()).ok_or("unreadable time")
}

/// Whether the time read (the first of `candidates` present) gives only a year or a month (`2013`,
/// `2013-04`): placed at its first day, and counted (`partial_date`).
fn partial_date(candidates: &[Option<&str>]) -> bool {
    candidates.iter().flatten().next().is_some_and(|s| s.trim().len() < 10)
}

/// A resource's id and its rank among the versions of it an input holds (a history or an incremental
/// export beside the full one, two exports of one system): `meta.lastUpdated`, then a numeric
/// `meta.versionId`; of equal ranks the one read last is the latest.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Version {
    /// a 128-bit hash of the resource type, id and subject
    key: u128,
    /// `lastUpdated` (whether it has one, then milliseconds) over `versionId` (16 bits), 61 bits
    rank: u64,
}

/// The version of a resource of type `resource` with `id` and `meta` (`None`: it has no id, and is no
/// version of another).
/// The key holds the subject's reference too: two sources' resources of one id (two sites' servers
/// numbering from 1) about two patients are two resources.
fn version(resource: &str, id: &Loose, meta: &VersionMeta, subject: Option<&Reference>) -> Option<Version> {
    use std::hash::{Hash, Hasher};
    let id = id.0.as_deref()?.trim();
    if id.is_empty() {
        return None;
    }
    // the patient it names, however the reference is written (`Patient/p1`, an absolute URL, a
    // `/_history/2`, `urn:uuid:`), else the reference as written
    let named = subject.and_then(subject_id);
    let subject = named.as_deref().or(subject.and_then(|r| r.reference.as_deref()).map(str::trim));
    // two SipHashes of different seeds (SHA-256 cost a quarter of a read): the type and id alone, for a
    // Bundle's DELETE, which names no patient ([`id_key`]), over the type, id and patient
    let mut h = std::hash::DefaultHasher::new();
    (1u8, resource, id, subject).hash(&mut h);
    let key = u128::from(id_key(resource, id)) << 64 | u128::from(h.finish());
    // (a versionId past 2^16 - 1 counts as that: a resource with 65,535 versions is none here)
    let version = meta.version_id.as_deref().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0).min((1 << 16) - 1);
    let rank = match meta.last_updated.as_deref().and_then(|u| instant_ms(u.trim())) {
        Some(t) => timed_rank(t, version),
        None => version,
    };
    Some(Version { key, rank })
}

/// The rank of a version with a time (`ms` since the epoch; above every version without one): the
/// milliseconds from the earliest time read, 44 bits (557 years), over `low` (16 bits: a versionId).
fn timed_rank(ms: i64, low: u64) -> u64 {
    1 << 60 | (ms.saturating_sub(super::EARLIEST_TIME * 1000).clamp(0, (1 << 44) - 1) as u64) << 16 | low
}

/// The hash of a resource's type and id (the top half of its [`Version`]'s key).
fn id_key(resource: &str, id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (0u8, resource, id).hash(&mut h);
    h.finish()
}

/// A Bundle entry's `DELETE` (a history's, or a bulk export's deleted resources, which it gives as
/// transaction Bundles of DELETE requests): the resource type and id its `request.url` names
/// (`Observation/123`, the server's absolute URL, a `/_history/n` after it), and its rank as a
/// version's ([`version`]): `response.lastModified`, else after every version (the deletion is
/// applied to every version read). `None` for a conditional delete (`Observation?identifier=...`) or
/// a url that names no resource.
fn deletion(url: &str, last_modified: Option<&str>) -> Option<(String, String, u64)> {
    let url = url.trim();
    if url.contains('?') {
        return None;
    }
    let mut parts: Vec<&str> = url.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    let [.., resource, id] = parts.as_slice() else { return None };
    let typed =
        resource.starts_with(|c: char| c.is_ascii_uppercase()) && resource.bytes().all(|b| b.is_ascii_alphabetic());
    if !typed || id.is_empty() {
        return None;
    }
    let rank = match last_modified.and_then(|u| instant_ms(u.trim())) {
        // (after every version of that instant)
        Some(t) => timed_rank(t, 0xFFFF),
        None => RANK_BITS,
    };
    Some((resource.to_string(), id.trim().to_string(), rank))
}

/// The version an entity tag names: `W/"3"`, `"3"`, `3`.
fn etag_version(etag: &str) -> Option<u64> {
    let t = etag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.trim_matches('"').parse().ok()
}

/// An instant in milliseconds since the Unix epoch, its fraction of a second read (`.5`, `.123456`:
/// two versions saved within a second are told apart to the millisecond).
fn instant_ms(s: &str) -> Option<i64> {
    let seconds = time::utc(s)?;
    // the fraction follows the seconds of the time part (`T08:00:00.5Z`, or after a space); a date
    // alone has none
    let ms = match s.find(['T', 't', ' ']).and_then(|t| s[t..].find('.').map(|dot| t + dot + 1)) {
        Some(from) => {
            let mut ms = 0;
            let mut digits = s[from..].bytes().take_while(u8::is_ascii_digit);
            for _ in 0..3 {
                ms = ms * 10 + digits.next().map_or(0, |d| i64::from(d - b'0'));
            }
            ms
        }
        None => 0,
    };
    seconds.checked_mul(1000)?.checked_add(ms)
}

/// The versions of each resource read: the events of all but the latest version of a resource are
/// dropped when the input has been read (two versions were two resources: an Encounter given again
/// with another class and end made every admission positive), and counted (`resource_version`).
/// 32 bytes per resource read with an id, in read order, sorted once at the end (a hash map of them
/// took about 100).
#[derive(Debug, Default)]
pub(crate) struct Versions {
    /// (key, the resource type's place in [`VERSIONED`] in the top 3 bits over its rank, the events it
    /// gave as indices of `Dataset::events`)
    read: Vec<(u128, u64, u32, u32)>,
    /// not kept (a second pass that reads for identifiers only, or past 2^32 events)
    pub(crate) off: bool,
    /// (the note's key, its event, whether a DiagnosticReport gave it, whether it is a copy) of each
    /// note a DocumentReference or a DiagnosticReport gave (the copy of the other's note included, read
    /// as its original's event): of those whose version stays, each of one type is paired with one of
    /// the other with the same key, and of each pair the copy is dropped, else the later read (a note
    /// both give is one note, whatever the order their versions came in)
    pub(crate) notes: Vec<(u128, u32, bool, bool)>,
    /// (the [`id_key`] of a resource a Bundle's `DELETE` names, its rank): the versions read up to it
    /// are dropped
    deleted: Vec<(u64, u64)>,
}

/// What [`Versions::drop_replaced`] dropped, per resource type: the versions replaced by later ones,
/// and the resources deleted (a Bundle's `DELETE` of them).
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    pub(crate) replaced: std::collections::BTreeMap<&'static str, u64>,
    pub(crate) deleted: std::collections::BTreeMap<&'static str, u64>,
    /// deletions not applied: their type and id name resources of more than one patient (two sources
    /// numbering alike), and a DELETE names no patient
    pub(crate) ambiguous: std::collections::BTreeMap<&'static str, u64>,
}

/// The resource types whose versions are told apart (those that give events).
const VERSIONED: [&str; 5] = ["Observation", "Encounter", "DocumentReference", "DiagnosticReport", "Composition"];

/// The bits of [`Versions::read`]'s second field that are the rank.
const RANK_BITS: u64 = (1 << 61) - 1;

impl Versions {
    /// A resource version read, that gave `events`.
    pub(crate) fn read(&mut self, resource: &'static str, v: Version, events: std::ops::Range<usize>) {
        let (Ok(start), Ok(end), false) = (u32::try_from(events.start), u32::try_from(events.end), self.off) else {
            self.off = true;
            self.read = Vec::new();
            return;
        };
        if let Some(t) = VERSIONED.iter().position(|r| *r == resource) {
            self.read.push((v.key, (t as u64) << 61 | v.rank, start, end));
        }
    }

    /// A Bundle's `DELETE` of a resource ([`deletion`]).
    pub(crate) fn delete(&mut self, resource: &str, id: &str, rank: u64) {
        if !self.off && VERSIONED.contains(&resource) {
            self.deleted.push((id_key(resource, id), rank));
        }
    }

    /// Drops the events of the versions replaced, and of the resources deleted up to their deletion,
    /// from `events` (once every index is no longer used); returns how many of each resource type.
    pub(crate) fn drop_replaced(&mut self, events: &mut Vec<super::Event>) -> Dropped {
        use rayon::prelude::*;
        let mut read = std::mem::take(&mut self.read);
        let mut dropped = Dropped::default();
        // the latest deletion of each resource type and id
        let mut deleted: HashMap<u64, u64> = HashMap::new();
        for (key, rank) in std::mem::take(&mut self.deleted) {
            let r = deleted.entry(key).or_default();
            *r = (*r).max(rank);
        }
        // by resource, then rank; a stable sort: of equal ranks the one read last is last
        read.par_sort_by_key(|r| (r.0, r.1 & RANK_BITS));
        let mut gone: Vec<bool> = Vec::new();
        let drop = |gone: &mut Vec<bool>, start: u32, end: u32| {
            if start < end {
                if gone.is_empty() {
                    *gone = vec![false; events.len()];
                }
                for g in gone.iter_mut().take(end as usize).skip(start as usize) {
                    *g = true;
                }
            }
        };
        // how many resources (type, id and patient) each deleted type and id names
        let mut named: HashMap<u64, u32> = HashMap::new();
        if !deleted.is_empty() {
            for group in read.chunk_by(|a, b| a.0 == b.0) {
                let id = (group[0].0 >> 64) as u64;
                if deleted.contains_key(&id) {
                    *named.entry(id).or_default() += 1;
                }
            }
        }
        for group in read.chunk_by(|a, b| a.0 == b.0) {
            let resource = VERSIONED.get((group[0].1 >> 61) as usize).copied().unwrap_or("Observation");
            if group.len() > 1 {
                *dropped.replaced.entry(resource).or_default() += group.len() as u64 - 1;
                for &(_, _, start, end) in &group[..group.len() - 1] {
                    drop(&mut gone, start, end);
                }
            }
            // deleted after its latest version (or with no time said): gone; a version after the
            // deletion (the resource made again) stays
            let id = (group[0].0 >> 64) as u64;
            if named.get(&id).is_some_and(|n| *n > 1) {
                *dropped.ambiguous.entry(resource).or_default() += 1;
            } else if let Some(&upto) = deleted.get(&id) {
                if let Some(&(_, _, start, end)) = group.last().filter(|g| g.1 & RANK_BITS <= upto) {
                    *dropped.deleted.entry(resource).or_default() += 1;
                    drop(&mut gone, start, end);
                }
            }
        }
        // a note both a DocumentReference and a DiagnosticReport give, of the versions that stay: the
        // one read first stays (a copy whose original's resource was replaced stays; a report's later
        // version read after the pair matched, or before it, is the same note again)
        let mut notes = std::mem::take(&mut self.notes);
        notes.retain(|n| !gone.get(n.1 as usize).copied().unwrap_or(false));
        notes.par_sort_unstable_by_key(|n| (n.0, n.1));
        for group in notes.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
            let docs = group.iter().filter(|n| !n.2);
            let reports = group.iter().filter(|n| n.2);
            for (d, r) in docs.zip(reports) {
                if gone.is_empty() {
                    gone = vec![false; events.len()];
                }
                // the copy of a pair goes (it is its original's event, which may be a replaced version's,
                // its code the older one's); else the one read later
                let drop = match (d.3, r.3) {
                    (true, false) => d.1,
                    (false, true) => r.1,
                    _ => d.1.max(r.1),
                };
                if let Some(g) = gone.get_mut(drop as usize) {
                    *g = true;
                }
            }
        }
        if gone.iter().any(|g| *g) {
            let mut g = gone.iter();
            events.retain(|_| !*g.next().unwrap_or(&false));
        }
        dropped
    }
}

/// Why a line is malformed.
type Bad = &'static str;

/// A required time: the first of the candidates present; unreadable is malformed, none is `None`
/// (R4 lets a resource have no time: counted as unusable by the caller).
fn required_time(
    t: Option<std::result::Result<time::Stamp, Bad>>,
    opts: &ReadOptions,
    out: &mut LineOut,
) -> std::result::Result<Option<i64>, Bad> {
    match t {
        Some(Ok(t)) => utc(t, opts, out).map(Some),
        Some(Err(why)) => Err(why),
        None => Ok(None),
    }
}

/// A line as JSON. serde_json checks that each string it reads from bytes is UTF-8 (keys included,
/// a few dozen calls per resource); a line that is UTF-8 as a whole, the usual case, is checked once
/// with SIMD and read as a `str`, which serde_json does not check again. Any other line is read from
/// its bytes as before (invalid bytes inside a field that is skipped are no error there).
fn from_line<'a, R: Deserialize<'a>>(line: &'a [u8]) -> serde_json::Result<R> {
    match simdutf8::basic::from_utf8(line) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(line),
    }
}

/// Mends each lone UTF-16 surrogate escape of a JSON text (`\ud83d` without the other half of its
/// pair: a string cut between the halves by a system that counts UTF-16 units, as Java and
/// JavaScript exporters truncate) into a private-use character, U+E000 plus its offset from U+D800
/// (U+FFFD for all of them made two ids cut differently one), in place and at the same length (line ranges and
/// offsets stay); returns how many. The text is valid JSON, but serde_json refuses such a string, and
/// the whole resource was lost where the string was a field read (a note's text, a unit) while the
/// same escape in a field not read passed. A `\\u...` (an escaped backslash) is no escape.
pub(crate) fn mend_lone_surrogates(text: &mut [u8]) -> u64 {
    // most lines have no `\u` escape at all (one SIMD search; a line's other escapes, `\n` and `\"` in
    // a narrative, are not looked at one by one)
    if memchr::memmem::find(text, b"\\u").is_none() {
        return 0;
    }
    fn hex4(b: Option<&[u8]>) -> Option<u16> {
        let b = b?;
        std::str::from_utf8(b).ok().and_then(|s| u16::from_str_radix(s, 16).ok()).filter(|_| b.len() == 4)
    }
    let (mut mended, mut i) = (0, 0);
    while let Some(j) = memchr::memchr(b'\\', &text[i..]) {
        let at = i + j;
        if text.get(at + 1) != Some(&b'u') {
            i = (at + 2).min(text.len());
            continue;
        }
        let lone = match hex4(text.get(at + 2..at + 6)) {
            Some(0xD800..=0xDBFF) => {
                let pair = text.get(at + 6..at + 8) == Some(b"\\u")
                    && matches!(hex4(text.get(at + 8..at + 12)), Some(0xDC00..=0xDFFF));
                if pair {
                    i = at + 12;
                    continue;
                }
                true
            }
            Some(0xDC00..=0xDFFF) => true,
            _ => false,
        };
        if lone {
            // (the lone half's own private-use character: two strings cut differently stay two, an id
            // or a patient's reference included, where U+FFFD made them one)
            let u = hex4(text.get(at + 2..at + 6)).unwrap_or(0xD800);
            let private = format!("{:04x}", 0xE000 + (u - 0xD800));
            text[at + 2..at + 6].copy_from_slice(private.as_bytes());
            mended += 1;
        }
        i = (at + 6).min(text.len());
    }
    mended
}

/// Why a line that did not parse as `R` is malformed, with the field where it failed
/// (`not a valid Observation (at valueQuantity.value)`): parsed again, rarely, to find it. The field
/// path names only fields of the resource types read (array positions dropped, a segment that is
/// not a plain name shown as `?`), never a value or a key the resource types do not read; each distinct reason is kept once, at most
/// [`MAX_REASONS`] of them.
fn invalid_at<'a, R: Deserialize<'a>>(line: &'a [u8], invalid: Bad) -> Bad {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static REASONS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let Err(e) = serde_path_to_error::deserialize::<_, R>(&mut serde_json::Deserializer::from_slice(line)) else {
        return invalid;
    };
    // a line cut short or broken (`{"resourceType":"Observation", "code": {`) is no resource at all
    // (bytes that are not UTF-8 where the parse failed: FHIR JSON is UTF-8; a Shift_JIS export was
    // said as "not JSON", found by a tester)
    let not_utf8 = e.inner().to_string().contains("invalid unicode") || std::str::from_utf8(line).is_err();
    let invalid = match (e.inner().is_syntax() || e.inner().is_eof(), not_utf8) {
        (_, true) => "not UTF-8 (FHIR JSON is UTF-8: a Shift_JIS or other export is to be converted first)",
        (true, false) => "not JSON",
        (false, false) => invalid,
    };
    let mut fields: Vec<&str> = vec![];
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { .. } => {}
            // a key of the line that is not a field read is the input's text: not shown, and the path
            // ends there
            serde_path_to_error::Segment::Map { key } if FIELDS_READ.contains(&key.as_str()) => fields.push(key),
            _ => {
                fields.push("?");
                break;
            }
        }
    }
    // a key given twice in one object (serde names the field, one of those read: no text of the line)
    let message = e.inner().to_string();
    let twice = message
        .strip_prefix("duplicate field `")
        .and_then(|m| m.split('`').next())
        .and_then(|k| FIELDS_READ.iter().find(|f| **f == k))
        .filter(|_| fields.last() != Some(&"?"));
    if let Some(key) = twice {
        fields.push(key);
    } else if fields.is_empty() || fields == ["?"] {
        return invalid;
    }
    let path = fields.join(".");
    let reason = match twice {
        Some(_) => format!("{invalid} (key {path} given twice)"),
        None => format!("{invalid} (at {path}{})", older_fhir(line, invalid, &path)),
    };
    let mut known = REASONS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = known.get(reason.as_str()) {
        return r;
    }
    if known.len() >= MAX_REASONS {
        return invalid;
    }
    let r: &'static str = Box::leak(reason.into_boxed_str());
    known.insert(r);
    r
}

/// Where a resource fails to parse at an element FHIR DSTU2 writes in another shape than R4 (and the
/// element has that shape), the hint that the input is older FHIR: Observation `category` one
/// CodeableConcept, not a list; Encounter `class` a code, not a Coding.
fn older_fhir(line: &[u8], invalid: Bad, path: &str) -> &'static str {
    let key = match (invalid, path) {
        ("not a valid Observation", "category") => "category",
        ("not a valid Encounter", "class") => "class",
        _ => return "",
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { return "" };
    match (key, v.get(key)) {
        ("category", Some(serde_json::Value::Object(_))) | ("class", Some(serde_json::Value::String(_))) => {
            ": written as FHIR DSTU2 writes it; medtrain reads FHIR R4"
        }
        _ => "",
    }
}

/// The FHIR elements the resource types here read (the keys [`invalid_at`] may name).
const FIELDS_READ: &[&str] = &[
    "actualPeriod",
    "address",
    "attachment",
    "birthDate",
    "category",
    "class",
    "code",
    "coding",
    "comparator",
    "component",
    "conclusion",
    "contact",
    "content",
    "contentType",
    "context",
    "data",
    "date",
    "description",
    "display",
    "div",
    "effectiveDateTime",
    "effectiveInstant",
    "effectivePeriod",
    "end",
    "id",
    "identifier",
    "indexed",
    "issued",
    "link",
    "managingOrganization",
    "name",
    "note",
    "other",
    "patient",
    "period",
    "presentedForm",
    "reference",
    "resourceType",
    "section",
    "start",
    "status",
    "subject",
    "system",
    "telecom",
    "text",
    "title",
    "type",
    "unit",
    "url",
    "value",
    "valueAttachment",
    "valueBoolean",
    "valueCodeableConcept",
    "valueDateTime",
    "valueInteger",
    "valuePeriod",
    "valueQuantity",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueString",
    "valueTime",
];

/// The most distinct field paths [`invalid_at`] names (each lives as long as the process).
const MAX_REASONS: usize = 512;

/// Parses a resource of type `R` and starts its output (`fields`: its status, id, meta and subject);
/// `None` when its status says skip it.
fn start<'a, R: Deserialize<'a>>(
    line: &'a [u8],
    resource: &'static str,
    invalid: Bad,
    fields: impl Fn(&R) -> (&Option<Str<'a>>, &Loose<'a>, &VersionMeta<'a>, Option<&Reference<'a>>),
) -> std::result::Result<(R, LineOut<'a>, bool), Bad> {
    let r: R = from_line(line).map_err(|_| invalid_at::<R>(line, invalid))?;
    let (status, id, meta, subject) = fields(&r);
    let version = version(resource, id, meta, subject);
    let mut out = LineOut { resource: Some(resource), version, ..Default::default() };
    let skip = inactive(status);
    if skip {
        out.found("skipped_status", resource, "status");
    } else if status.as_deref().is_some_and(|s| !KNOWN_STATUSES.contains(&s)) {
        // read, and counted: a status none of the resources read has
        out.found("unknown_status", resource, "status");
    }
    Ok((r, out, skip))
}

/// The subject id of a resource; a `display` on the reference is a name finding. `None`: no subject,
/// or one that is not a Patient (a Group, a Device, a contained or logical reference).
fn subject_of<'a>(r: &Option<Reference<'a>>, resource: &'static str, out: &mut LineOut) -> Option<Cow<'a, str>> {
    let r = r.as_ref()?;
    reference_identifiers(r, resource, out);
    subject_id(r)
}

/// The Patient a resource is about, or the line's output counted as unusable (`no_patient_subject`).
macro_rules! patient_or_unusable {
    ($r:expr, $out:ident, $resource:expr) => {
        or_unusable!(subject_of($r, $resource, &mut $out), $out, "no_patient_subject", $resource, "subject")
    };
}

/// The value, or the line's output counted as unusable (`kind`, `field`) and returned.
macro_rules! or_unusable {
    ($e:expr, $out:ident, $kind:expr, $resource:expr, $field:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok($out.unusable($kind, $resource, $field)),
        }
    };
}

/// Scans free text and records what was found. The text kept is always redacted: under `reject` the
/// input is refused anyway, and no identifier should sit in memory longer than needed.
fn guard_text(text: String, resource: &'static str, field: &'static str, out: &mut LineOut) -> String {
    let text = guard::visible(text);
    let found = guard::scan(&text);
    if found.is_empty() {
        return text;
    }
    for (k, _) in &found {
        out.identifiers.push((*k, resource, field));
    }
    guard::redact(&text, &found)
}

/// Scans free text that is not kept, and records what was found. When the resource has a Patient
/// subject, the text is kept on the line's output to be searched for that subject's own identifiers
/// (`own_field` names those findings), as notes are.
fn scan_only<'a>(
    text: &str,
    subject: Option<&Cow<'a, str>>,
    resource: &'static str,
    (field, own_field): (&'static str, &'static str),
    out: &mut LineOut<'a>,
) {
    let text = guard::visible(text.to_owned());
    for (k, _) in guard::scan(&text) {
        out.identifiers.push((k, resource, field));
    }
    if let Some(subject) = subject {
        match out.unkept.iter_mut().find(|(s, _)| s == subject) {
            Some((_, texts)) => texts.push((resource, own_field, text)),
            None => out.unkept.push((subject.clone(), vec![(resource, own_field, text)])),
        }
    }
}

fn observation<'a>(line: &'a [u8], opts: &ReadOptions) -> std::result::Result<LineOut<'a>, Bad> {
    let (o, mut out, skip) = start::<Observation>(line, "Observation", "not a valid Observation", |o| {
        (&o.status, &o.id, &o.meta, o.subject.as_ref())
    })?;
    // a name on the subject reference and free text on any Observation, used or not, are the export's
    // content: checked (a valueString was scanned only on the labs read, a display only on them)
    if let Some(r) = &o.subject {
        reference_identifiers(r, "Observation", &mut out);
    }
    if !o.note.is_empty() || o.value_string.is_some() || o.text.is_some() {
        let subject = o.subject.as_ref().and_then(subject_id);
        scan_narrative(&o.text, subject.as_ref(), "Observation", &mut out);
        for n in o.note.iter().filter_map(|n| n.text.as_deref()) {
            scan_only(n, subject.as_ref(), "Observation", ("note.text", "note.text.subject_identifier"), &mut out);
        }
        if let Some(s) = o.value_string.as_deref() {
            let fields = ("valueString", "valueString.subject_identifier");
            scan_only(s, subject.as_ref(), "Observation", fields, &mut out);
        }
    }
    let kind = if is_lab_category(&o.category) || (o.category.is_empty() && catalogue_code(&o.code, opts)) {
        EventKind::Lab
    } else if has_code(&o.category, "vital-signs") && opts.vitals {
        EventKind::Vital
    } else {
        // not a laboratory result by its category (none, another one, or vital signs not asked for):
        // counted, so that an export without categories does not lose its labs without a word
        let skipped = if o.category.is_empty() && o.value_quantity.is_some() {
            // a measurement with a unit and no category, whose code is no catalogue test: a lab
            // perhaps (a LOINC code the catalogue lacks, a local code `read.code_map` could map)
            out.info.push((Severity::Warning, "no_category", "Observation", "category"));
            return Ok(out);
        } else if o.category.is_empty() {
            "no_category"
        } else if has_code(&o.category, "vital-signs") {
            "vital_signs_not_read"
        } else {
            "skipped_category"
        };
        out.found(skipped, "Observation", "category");
        return Ok(out);
    };
    if skip {
        return Ok(out);
    }
    // (its display was checked above)
    let subject =
        or_unusable!(o.subject.as_ref().and_then(subject_id), out, "no_patient_subject", "Observation", "subject");
    let coding =
        or_unusable!(o.code.as_ref().and_then(|c| pick(&c.coding, opts)), out, "no_code", "Observation", "code.coding");
    if o.code.as_ref().is_some_and(|c| conflicting_codings(&c.coding)) {
        // read as the preferred coding, and said: the export's codings name two catalogue tests
        // (serum creatinine in JLAC10 beside potassium in LOINC)
        out.info_once(Severity::Warning, "conflicting_codings", "Observation", "code.coding");
    }
    if partial_date(&[
        o.effective_date_time.as_deref(),
        o.effective_period.as_ref().and_then(|p| p.start.as_deref()),
        o.effective_period.as_ref().and_then(|p| p.end.as_deref()),
        o.effective_instant.as_deref(),
        o.issued.as_deref(),
    ]) {
        out.found("partial_date", "Observation", "effective");
    }
    let time = or_unusable!(
        required_time(
            first_time(
                &[
                    at!(o.effective_date_time.as_deref(), "effectiveDateTime"),
                    at!(o.effective_period.as_ref().and_then(|p| p.start.as_deref()), "effectivePeriod.start"),
                    // a period with only its end (a collection whose start was not recorded)
                    at!(o.effective_period.as_ref().and_then(|p| p.end.as_deref()), "effectivePeriod.end"),
                    at!(o.effective_instant.as_deref(), "effectiveInstant"),
                    at!(o.issued.as_deref(), "issued"),
                ],
                &mut out
            ),
            opts,
            &mut out,
        )?,
        out,
        "no_time",
        "Observation",
        "effective"
    );
    // a value beside a reason for its absence (invalid R4: obs-6): not read, and counted
    let has_value = o.value_quantity.is_some()
        || o.value_string.is_some()
        || o.value_integer.is_some()
        || o.value_codeable_concept.is_some()
        || o.unread_value().is_some();
    if has_value && o.data_absent_reason.is_some() {
        return Ok(out.unusable("value_and_absent_reason", "Observation", "dataAbsentReason"));
    }
    // a coded or ordinal result: its own event, with the ordinal level from a closed set
    // a number written as a string, or an integer: a value of its own (with no unit)
    // (a censored one written as text, `<0.3`, `0.3未満`: its limit, counted as a comparator's is)
    let censored = match (&o.value_quantity, &o.value_string) {
        (None, Some(s)) if numeric_string(s).is_none() => crate::data::csv::censored_number(s),
        _ => None,
    };
    if censored.is_some() {
        out.found("censored_value", "Observation", "valueString");
    }
    let plain = match (&o.value_quantity, &o.value_string, o.value_integer) {
        (None, Some(s), _) => numeric_string(s).or(censored),
        (None, None, Some(i)) => Some(i as f32),
        _ => None,
    };
    let coded = match (&o.value_quantity, &o.value_codeable_concept, &o.value_string) {
        (None, Some(c), _) if kind == EventKind::Lab => Some(coded_level(c).ok_or("valueCodeableConcept")),
        (None, None, Some(s)) if kind == EventKind::Lab && plain.is_none() => Some(ordinal(s).ok_or("valueString")),
        _ => None,
    };
    // a censored result (`<0.1`) is read as its limit, and counted
    let quantities = o.value_quantity.iter().chain(o.component.iter().filter_map(|c| c.value_quantity.as_ref()));
    for c in quantities.clone().filter_map(|q| q.comparator.as_deref()) {
        if !matches!(c, "<" | "<=" | ">=" | ">" | "ad") {
            return Err("valueQuantity.comparator is not <, <=, >=, > or ad");
        }
        out.found("censored_value", "Observation", "valueQuantity.comparator");
    }
    if quantities.filter_map(|q| q.value).any(|v| v.quoted) {
        out.found("number_as_string", "Observation", "valueQuantity.value");
    }
    let rec = |coding: &Coding<'a>, (value, unit): (f32, Option<Cow<'a, str>>)| Rec {
        subject: subject.clone(),
        time,
        kind,
        system: cow(&coding.system),
        code: cow(&coding.code),
        value,
        unit,
        text: None,
        end: i64::MIN,
    };
    // a panel (no value of its own, components with values) gives one event per component; components
    // beside a value of the Observation's own are events too. A component value that is not read (no
    // coded test, a coded or text value) is counted (`component_not_read`), where it was lost silently.
    let mut lost: SmallVec<[&'static str; 2]> = SmallVec::new();
    let mut parts: SmallVec<[Rec; 1]> = SmallVec::new();
    for c in &o.component {
        let value = match (&c.value_quantity, c.value_string.as_deref().map(numeric_string), c.value_integer) {
            (Some(_), _, _) => quantity(&c.value_quantity),
            (None, Some(Some(v)), _) => (v, None),
            (None, None, Some(i)) => (i as f32, None),
            (None, Some(None), _) => {
                lost.push("component.valueString");
                continue;
            }
            (None, None, None) => {
                if c.value_codeable_concept.is_some() {
                    lost.push("component.valueCodeableConcept");
                }
                // else no value (or one of a type not read: a Ratio, a Range...)
                continue;
            }
        };
        match c.code.as_ref().and_then(|k| pick(&k.coding, opts)) {
            Some(k) => parts.push(rec(k, value)),
            None => lost.push("component.code"),
        }
    }
    for field in lost {
        let f = (Severity::Warning, "component_not_read", "Observation", field);
        if !out.info.contains(&f) {
            out.info.push(f);
        }
    }
    if !parts.is_empty() {
        // the Observation's own quantity (where it has one) first, then its components
        if o.value_quantity.is_some() {
            out.recs.push(rec(coding, quantity(&o.value_quantity)));
        }
        out.recs.extend(parts);
    } else if let Some(level) = coded {
        match level {
            Ok(level) => out.recs.push(Rec { kind: EventKind::Coded, ..rec(coding, (level, None)) }),
            // counted in the QA report, not dropped without a word
            Err(field) => out.found("unmapped_coded_value", "Observation", field),
        }
    } else if let Some(v) = plain {
        out.recs.push(rec(coding, (v, None)));
    } else if let (None, Some(field)) = (&o.value_quantity, o.unread_value()) {
        // a ratio, a range, a boolean...: its type counted, where it was counted a missing value
        return Ok(out.unusable("value_type_not_read", "Observation", field));
    } else if o.value_quantity.is_none() && o.component.is_empty() && o.has_member.is_some() {
        // a panel whose results are its members (Observations read on their own lines): counted
        out.found("panel_with_members", "Observation", "hasMember");
    } else {
        out.recs.push(rec(coding, quantity(&o.value_quantity)));
    }
    Ok(out)
}

/// Whether any coding of an Observation's code is a test of the lab catalogue (LOINC or JLAC10): an
/// Observation with no category is a laboratory result when its code says so (many exports leave the
/// category out).
fn catalogue_code(code: &Option<Coded>, opts: &ReadOptions) -> bool {
    code.iter().flat_map(|c| &c.coding).any(|c| match (c.system.as_deref(), c.code.as_deref()) {
        (Some(system), Some(code)) if catalog::lookup(system, code).is_some() => true,
        // a local code `read.code_map` maps to one
        (system, Some(code)) => {
            opts.code_map.as_ref().is_some_and(|m| m.get(system.unwrap_or(""), code).is_some_and(|r| m.in_catalogue(r)))
        }
        _ => false,
    })
}

/// HL7 v2 table 0074 (diagnostic service section): the sections that are laboratory work.
const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const V2_0074_LAB: &[&str] =
    &["LAB", "CH", "HM", "IMM", "SR", "URN", "BG", "BLB", "CG", "GE", "MB", "MCB", "MYC", "VR", "TX", "OSL"];

/// Lab results under any lab category: FHIR's observation-category `laboratory` (any system, as JP Core
/// repeats it under its own), or a laboratory section of HL7 v2 table 0074 (`LAB`, `CH`, `HM`, ...).
fn is_lab_category(cs: &[Coded]) -> bool {
    cs.iter().flat_map(|c| &c.coding).any(|k| match k.code.as_deref() {
        Some("laboratory") => true,
        Some(code) => k.system.as_deref() == Some(V2_0074) && V2_0074_LAB.contains(&code),
        None => false,
    })
}

/// The ordinal level of a qualitative result written as text, from a closed set: negative 0 (`-`,
/// `(-)`, `陰性`, `negative`), trace 1 (`±`, `+-`, `trace`, `弱陽性`), 1+ 2 (`+`, `1+`, `陽性`,
/// `positive`: a positive without a grade counts as the lowest grade), 2+ 3, 3+ 4, 4+ 5. Full-width
/// forms and surrounding parentheses are accepted; anything else has no level.
pub fn ordinal(text: &str) -> Option<f32> {
    if text.len() > 32 {
        return None;
    }
    let mut s = String::with_capacity(text.len());
    for c in text.trim().chars() {
        s.push(match c {
            '＋' => '+',
            '－' | '−' | '‐' | 'ー' => '-',
            '（' => '(',
            '）' => ')',
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            c if c.is_whitespace() => continue,
            c => c.to_ascii_lowercase(),
        });
    }
    let s = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')).unwrap_or(&s);
    Some(match s {
        "-" | "neg" | "negative" | "陰性" | "nd" => 0.0,
        "±" | "+-" | "+/-" | "tr" | "trace" | "弱陽性" => 1.0,
        "+" | "1+" | "pos" | "positive" | "陽性" => 2.0,
        "++" | "2+" => 3.0,
        "+++" | "3+" => 4.0,
        "++++" | "4+" => 5.0,
        _ => return None,
    })
}

/// The ordinal level of a coded result: known answer codes (SNOMED CT, LOINC answers, HL7
/// ObservationInterpretation), else a code or the concept's text that [`ordinal`] reads.
fn coded_level(c: &Concept) -> Option<f32> {
    let known = |k: &Coding| match (k.system.as_deref().unwrap_or(""), k.code.as_deref().unwrap_or("")) {
        ("http://snomed.info/sct", "260385009") => Some(0.0), // Negative
        ("http://snomed.info/sct", "260405006") => Some(1.0), // Trace
        ("http://snomed.info/sct", "10828004") => Some(2.0),  // Positive
        ("http://loinc.org", "LA6577-6") => Some(0.0),        // Negative
        ("http://loinc.org", "LA6576-8") => Some(2.0),        // Positive
        ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "NEG") => Some(0.0),
        ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS") => Some(2.0),
        (_, code) => ordinal(code),
    };
    c.coding
        .iter()
        .find_map(known)
        .or_else(|| c.coding.iter().find_map(ordinal_extension))
        .or_else(|| c.text.as_deref().and_then(ordinal))
}

fn note_code<'a>(t: &Option<Concept<'a>>, opts: &ReadOptions) -> (Cow<'a, str>, Cow<'a, str>) {
    t.as_ref()
        .and_then(|c| pick(&c.coding, opts))
        .map(|k| (cow(&k.system), cow(&k.code)))
        .unwrap_or_else(|| ("medtrain:note".into(), "note".into()))
}

fn document_reference<'a>(line: &'a [u8], opts: &ReadOptions) -> std::result::Result<LineOut<'a>, Bad> {
    let (d, mut out, skip) =
        start::<DocumentReference>(line, "DocumentReference", "not a valid DocumentReference", |d| {
            (&d.status, &d.id, &d.meta, d.subject.as_ref())
        })?;
    if skip {
        return Ok(out);
    }
    let titles = d.content.iter().filter_map(|c| c.attachment.as_ref()?.title.as_deref());
    if d.description.is_some() || titles.clone().next().is_some() || d.text.is_some() {
        let subject = d.subject.as_ref().and_then(subject_id);
        scan_narrative(&d.text, subject.as_ref(), "DocumentReference", &mut out);
        if let Some(desc) = d.description.as_deref() {
            let fields = ("description", "description.subject_identifier");
            scan_only(desc, subject.as_ref(), "DocumentReference", fields, &mut out);
        }
        for title in titles {
            let fields = ("content.attachment.title", "content.attachment.title.subject_identifier");
            scan_only(title, subject.as_ref(), "DocumentReference", fields, &mut out);
        }
    }
    let subject = patient_or_unusable!(&d.subject, out, "DocumentReference");
    let period_start = d.context.as_ref().and_then(|c| c.period.as_ref()).and_then(|p| p.start.as_deref());
    if partial_date(&[d.date.as_deref(), period_start]) {
        out.found("partial_date", "DocumentReference", "date");
    }
    // the reference's date, else the clinical period's start, else STU3's `indexed` (R4's `date`)
    let time = or_unusable!(
        required_time(
            first_time(
                &[
                    at!(d.date.as_deref(), "date"),
                    at!(period_start, "context.period.start"),
                    at!(d.indexed.as_deref(), "indexed"),
                ],
                &mut out
            ),
            opts,
            &mut out
        )?,
        out,
        "no_time",
        "DocumentReference",
        "date"
    );
    let (system, code) = note_code(&d.type_, opts);
    let attachments = d.content.iter().filter_map(|c| c.attachment.as_ref());
    let fields = ("content.attachment.data", "content.attachment.contentType");
    let mut links = Vec::new();
    let texts = attachment_texts(line, attachments, "DocumentReference", fields, Some(&mut links), &mut out)?;
    if texts.is_empty() {
        if !links.is_empty() {
            let (system, code) = (system.into_owned(), code.into_owned());
            // (its version is said with its note, once its Binaries are read)
            let version = out.version.take();
            out.by_url = Some(UrlNote {
                resource: "DocumentReference",
                subject: subject.into_owned(),
                time,
                system,
                code,
                links,
                version,
                also: None,
            });
            return Ok(out);
        }
        out.no_text_attachment("DocumentReference", "content.attachment.contentType");
        return Ok(out);
    }
    let text = guard_text(texts.join("\n"), "DocumentReference", "content.attachment.data", &mut out);
    out.recs.push(Rec::note(subject, time, (system, code), text));
    Ok(out)
}

/// The texts of a resource's attachments (a DocumentReference's `content[].attachment`, a
/// DiagnosticReport's `presentedForm`): those with a text content type ([`text_form`]) and base64
/// `data` (or a contained Binary's), as [`attachment_text`] reads them, in the first form of
/// plain, HTML and RTF that one of them has. One without data, or in a charset the reader does not
/// know, is counted (`note_without_data`, `undecodable_note` under the (data, contentType) `fields`);
/// data that is not base64 makes the line malformed. One whose data is a Binary of the export
/// (`url: "Binary/id"`) is put in `links` as (id, content type) where the caller reads such notes,
/// else said (`note_by_url`).
fn attachment_texts<'b, 'a: 'b>(
    line: &[u8],
    attachments: impl Iterator<Item = &'b Attachment<'a>>,
    resource: &'static str,
    (data_field, type_field): (&'static str, &'static str),
    mut links: Option<&mut Vec<(String, String)>>,
    out: &mut LineOut,
) -> std::result::Result<Vec<String>, Bad> {
    let mut forms: [Vec<String>; 3] = Default::default();
    // the contained Binaries, read once for the resource; each read once however many attachments
    // name it
    let mut binaries: Option<HashMap<String, (Option<String>, Option<String>)>> = None;
    let mut named = std::collections::HashSet::new();
    for a in attachments {
        // data by `url: "#id"`: the Binary contained in the resource, its content type where the
        // attachment gives none
        let binary = match (&a.data, a.url.as_deref()) {
            (None, Some(u)) if u.starts_with('#') => {
                if !named.insert(u.to_owned()) {
                    continue;
                }
                let all = binaries.get_or_insert_with(|| contained_binaries(line));
                match all.remove(&u[1..]) {
                    Some(b) => Some(b),
                    None => {
                        out.found("note_without_data", resource, data_field);
                        continue;
                    }
                }
            }
            _ => None,
        };
        let ct = a.content_type.as_deref().or(binary.as_ref().and_then(|b| b.0.as_deref())).unwrap_or("");
        // a Binary of the export, whose own content type says what it is where the attachment does not
        let linked = match (&a.data, &binary) {
            (None, None) => a.url.as_deref().and_then(binary_key),
            _ => None,
        };
        let form = text_form(ct);
        if form.is_none() && !(ct.trim().is_empty() && linked.is_some()) {
            continue;
        }
        let Some(data) = a.data.as_deref().or(binary.as_ref().and_then(|b| b.1.as_deref())) else {
            match (linked, links.as_deref_mut()) {
                (Some(id), Some(links)) => links.push((id.to_owned(), ct.trim().to_owned())),
                // a link the reader does not follow (a page elsewhere, as some EHR exports give notes):
                // the note is not in the export's lines; a warning, so that an export of links is not
                // taken for one without notes
                _ if a.url.is_some() && binary.is_none() => {
                    out.info_once(Severity::Warning, "note_by_url", resource, data_field)
                }
                _ => out.found("note_without_data", resource, data_field),
            }
            continue;
        };
        let Some(form) = form else { continue };
        match attachment_text(form, ct, data)? {
            Some((t, guessed)) => {
                if guessed {
                    out.info_once(Severity::Warning, "guessed_charset", resource, type_field);
                }
                forms[form as usize].push(t)
            }
            // (a note lost: a warning, at its line)
            None => out.info_once(Severity::Warning, "undecodable_note", resource, type_field),
        }
    }
    // a note sent in several forms (plain text, HTML, RTF: one content of each) is read once, in the
    // first of these it has text in (an HTML form that is only an image is no text)
    let decoded = forms.iter().any(|f| !f.is_empty());
    let mut text = forms.into_iter().find(|t| t.iter().any(|t| !t.trim().is_empty())).unwrap_or_default();
    // one text given twice (as UTF-8 and as Shift_JIS, or the same attachment repeated) is read once
    // (found by a tester: the note's tokens were doubled)
    let mut seen = std::collections::HashSet::new();
    text.retain(|t| seen.insert(t.trim().to_owned()));
    // attachments that decode to nothing but white space: an empty note (as the CSV reader says it),
    // not one of a type that is not text
    if text.is_empty() && decoded {
        out.found("empty_note", resource, data_field);
    }
    Ok(text)
}

/// A DiagnosticReport's text as a note: its `presentedForm` attachments in `text/plain` (as a
/// DocumentReference's are read) and its `conclusion` (where the attachments do not already hold
/// it), at `effectiveDateTime`, `effectivePeriod.start`, else `issued`, coded by `code`. A report
/// with neither (a lab panel, whose results are Observations) is counted and not read further; one
/// whose only form is not text (a PDF) and has no conclusion is counted (`no_text_attachment`). A note
/// a DocumentReference of the same subject also holds at the same time (Synthea writes each note as
/// both) is read once (`stream::apply`).
fn diagnostic_report<'a>(line: &'a [u8], opts: &ReadOptions) -> std::result::Result<LineOut<'a>, Bad> {
    /// whether the report has text, read before the whole of it: a report without (most, in a lab
    /// export) is not held to the fields it would need as a note
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Texts<'a> {
        conclusion: Option<IgnoredAny>,
        presented_form: Option<IgnoredAny>,
        /// (a narrative is scanned)
        text: Option<IgnoredAny>,
        /// (a report of results contained in it is a version of itself as one with a note is)
        #[serde(default, borrow)]
        id: Loose<'a>,
        #[serde(default, borrow)]
        meta: VersionMeta<'a>,
        /// (any JSON: one of another shape is the whole report's reader's to say)
        #[serde(borrow)]
        subject: Option<&'a serde_json::value::RawValue>,
    }
    const RESOURCE: &str = "DiagnosticReport";
    // the version of a report without text: its contained results are its events
    let version = |t: &Texts<'a>| {
        let subject = t.subject.and_then(|r| serde_json::from_str::<Reference>(r.get()).ok());
        version(RESOURCE, &t.id, &t.meta, subject.as_ref())
    };
    match from_line::<Texts>(line) {
        Ok(t @ Texts { conclusion: None, presented_form: None, text: None, .. }) => {
            Ok(LineOut { resource: Some(RESOURCE), version: version(&t), ..Default::default() })
        }
        // a report without text of its own (a lab panel) with a narrative: the narrative scanned, the
        // report read no further (as one without a narrative)
        Ok(t @ Texts { conclusion: None, presented_form: None, text: Some(_), .. }) => {
            #[derive(Deserialize)]
            struct Narrated<'a> {
                #[serde(borrow)]
                text: Option<Narrative<'a>>,
                #[serde(borrow)]
                subject: Option<Reference<'a>>,
            }
            let mut out = LineOut { resource: Some(RESOURCE), version: version(&t), ..Default::default() };
            if let Ok(n) = from_line::<Narrated>(line) {
                let subject = n.subject.as_ref().and_then(subject_id).map(|s| Cow::Owned(s.into_owned()));
                scan_narrative(&n.text, subject.as_ref(), RESOURCE, &mut out);
            }
            Ok(out)
        }
        // a report was counted and skipped before its text was read: its note not read (a form whose
        // data is not base64, a time that does not parse, a field of another shape) is a warning, not a
        // malformed line, and the results written inside it are read all the same (a subject of
        // another shape fails the look at its texts: the whole report says why)
        Ok(_) | Err(_) => report_note(line, opts).or_else(|_| {
            let mut out = LineOut { resource: Some(RESOURCE), ..Default::default() };
            out.info.push((Severity::Warning, "report_note_not_read", RESOURCE, "presentedForm"));
            Ok(out)
        }),
    }
}

/// [`diagnostic_report`] of a report with text.
fn report_note<'a>(line: &'a [u8], opts: &ReadOptions) -> std::result::Result<LineOut<'a>, Bad> {
    const RESOURCE: &str = "DiagnosticReport";
    let (d, mut out, skip) = start::<DiagnosticReport>(line, RESOURCE, "not a valid DiagnosticReport", |d| {
        (&d.status, &d.id, &d.meta, d.subject.as_ref())
    })?;
    if skip {
        return Ok(out);
    }
    let subject = d.subject.as_ref().and_then(subject_id);
    scan_narrative(&d.text, subject.as_ref(), RESOURCE, &mut out);
    for title in d.presented_form.iter().filter_map(|a| a.title.as_deref()) {
        let fields = ("presentedForm.title", "presentedForm.title.subject_identifier");
        scan_only(title, subject.as_ref(), RESOURCE, fields, &mut out);
    }
    let mut links = Vec::new();
    let mut texts = attachment_texts(
        line,
        d.presented_form.iter(),
        RESOURCE,
        ("presentedForm.data", "presentedForm.contentType"),
        Some(&mut links),
        &mut out,
    )?;
    // a form whose text is in a Binary of the export (`url: "Binary/id"`), as a DocumentReference's
    // can be: read with the export's Binaries, the conclusion with it (found by a tester: such a
    // report's form was not read)
    let by_url = texts.is_empty() && !links.is_empty();
    let mut texts: Vec<String> = texts
        .drain(..)
        .map(|t| guard_text(t, RESOURCE, "presentedForm.data", &mut out))
        .filter(|t| !t.trim().is_empty())
        .collect();
    if let Some(c) = d.conclusion.as_deref().filter(|c| !c.trim().is_empty()) {
        let c = guard_text(c.to_owned(), RESOURCE, "conclusion", &mut out);
        if !texts.iter().any(|t| t.contains(c.trim())) {
            texts.push(c);
        }
    }
    if texts.is_empty() && !by_url {
        if !d.presented_form.is_empty() {
            out.no_text_attachment(RESOURCE, "presentedForm.contentType");
        }
        return Ok(out);
    }
    let subject = patient_or_unusable!(&d.subject, out, RESOURCE);
    let period_start = d.effective_period.as_ref().and_then(|p| p.start.as_deref());
    if partial_date(&[d.effective_date_time.as_deref(), period_start]) {
        out.found("partial_date", RESOURCE, "effectiveDateTime");
    }
    let time = or_unusable!(
        required_time(
            first_time(
                &[
                    at!(d.effective_date_time.as_deref(), "effectiveDateTime"),
                    at!(period_start, "effectivePeriod.start"),
                    at!(d.issued.as_deref(), "issued"),
                ],
                &mut out
            ),
            opts,
            &mut out
        )?,
        out,
        "no_time",
        RESOURCE,
        "effectiveDateTime"
    );
    let (system, code) = note_code(&d.code, opts);
    if by_url {
        // (its version is said with its note, once its Binaries are read)
        let version = out.version.take();
        out.by_url = Some(UrlNote {
            resource: RESOURCE,
            subject: subject.into_owned(),
            time,
            system: system.into_owned(),
            code: code.into_owned(),
            links,
            version,
            also: texts.pop(),
        });
        return Ok(out);
    }
    out.recs.push(Rec::note(subject, time, (system, code), texts.join("\n")));
    Ok(out)
}

fn section_text(s: &Section, out: &mut Vec<String>) {
    if let Some(t) = s.title.as_deref() {
        out.push(t.to_owned());
    }
    if let Some(div) = s.text.as_ref().and_then(|n| n.div.as_deref()) {
        out.push(xhtml_to_text(div));
    }
    for sub in &s.section {
        section_text(sub, out);
    }
}

fn composition<'a>(line: &'a [u8], opts: &ReadOptions) -> std::result::Result<LineOut<'a>, Bad> {
    let (c, mut out, skip) = start::<Composition>(line, "Composition", "not a valid Composition", |c| {
        (&c.status, &c.id, &c.meta, c.subject.as_ref())
    })?;
    if skip {
        return Ok(out);
    }
    let subject = patient_or_unusable!(&c.subject, out, "Composition");
    if partial_date(&[c.date.as_deref()]) {
        out.found("partial_date", "Composition", "date");
    }
    let time = or_unusable!(
        required_time(first_time(&[at!(c.date.as_deref(), "date")], &mut out), opts, &mut out)?,
        out,
        "no_time",
        "Composition",
        "date"
    );
    let mut parts = Vec::new();
    for s in &c.section {
        section_text(s, &mut parts);
    }
    let text = parts.join("\n");
    let text = guard_text(text, "Composition", "section.text.div", &mut out);
    out.recs.push(Rec::note(subject, time, note_code(&c.type_, opts), text));
    Ok(out)
}

fn encounter<'a>(line: &'a [u8], opts: &ReadOptions) -> std::result::Result<LineOut<'a>, Bad> {
    let (e, mut out, skip) = start::<Encounter>(line, "Encounter", "not a valid Encounter", |e| {
        (&e.status, &e.id, &e.meta, e.subject.as_ref())
    })?;
    if skip {
        return Ok(out);
    }
    if e.text.is_some() {
        let subject = e.subject.as_ref().and_then(subject_id);
        scan_narrative(&e.text, subject.as_ref(), "Encounter", &mut out);
    }
    if e.subject.is_none() && e.patient.is_some() {
        // DSTU2's `patient`: said as what it is, not as a missing subject
        return Ok(out.unusable("no_patient_subject", "Encounter", "patient (FHIR DSTU2's; R4 reads subject)"));
    }
    let subject = patient_or_unusable!(&e.subject, out, "Encounter");
    let class = match &e.class {
        Some(EncounterClass::R4(c)) => Some(c),
        // R5's classes: the first of the v3 ActCode value set's (a local class first, then EMER, lost the
        // emergency visit), else the first given
        Some(EncounterClass::R5(cs)) => cs
            .iter()
            .flat_map(|c| c.coding.iter())
            .find(|c| c.code.as_deref().is_some_and(|k| reportable::encounter_class(k.trim()).is_some()))
            .or_else(|| cs.iter().find_map(|c| c.coding.first())),
        None => None,
    };
    // R4 requires a class; an export without one is counted, as an Encounter without a time is
    let class = or_unusable!(class.filter(|c| c.code.is_some()), out, "no_class", "Encounter", "class");
    // (R5's actualPeriod where R4's period is not: every R5 Encounter was `no_time`)
    if e.period.is_none() && e.actual_period.is_some() {
        out.found("fhir_r5_element", "Encounter", "actualPeriod");
    }
    let period = e.period.or(e.actual_period).unwrap_or_default();
    if partial_date(&[period.start.as_deref()]) {
        out.found("partial_date", "Encounter", "period.start");
    }
    let time = or_unusable!(
        required_time(first_time(&[at!(period.start.as_deref(), "period.start")], &mut out), opts, &mut out)?,
        out,
        "no_time",
        "Encounter",
        "period.start"
    );
    let mut end = match first_time(&[at!(period.end.as_deref(), "period.end")], &mut out) {
        None => i64::MIN,
        Some(t) => utc(t?, opts, &mut out)?,
    };
    // a stay that ends before it starts: the end is not read (a negative stay), and counted; an end of a
    // day, a month or a year (`2019-03-05`, placed at its start) is compared at its end
    let precision = match period.end.as_deref().map(str::trim).map(str::len) {
        Some(4) => 366 * 86_400,
        Some(7) => 31 * 86_400,
        Some(10) => 86_400,
        _ => 0,
    };
    if end != i64::MIN && end.saturating_add(precision) <= time && (precision > 0 || end < time) {
        out.info.push((Severity::Warning, "end_before_start", "Encounter", "period.end"));
        end = i64::MIN;
    }
    // an end no stay has (9999-12-31, a placeholder for "still admitted"): counted, not read (every
    // label window up to it counted the patient as admitted)
    if end >= super::LATEST_TIME {
        out.info.push((Severity::Warning, "implausible_time", "Encounter", "period.end"));
        end = i64::MIN;
    }
    out.recs.push(Rec {
        subject,
        time,
        kind: EventKind::Encounter,
        // the v3 code system's URL before terminology.hl7.org (DSTU2/STU3 exports, some still in R4)
        system: match class.system.as_deref() {
            Some("http://hl7.org/fhir/v3/ActCode") => Cow::Borrowed("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
            _ => cow(&class.system),
        },
        code: cow(&class.code),
        value: f32::NAN,
        unit: None,
        text: None,
        end,
    });
    Ok(out)
}

fn present(v: &Option<serde_json::Value>) -> bool {
    v.as_ref().is_some_and(present_value)
}

fn present_value(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// An extension whose value is a direct identifier: in a Patient, the field its finding names (a
/// contained Patient's is `contained.` and the same), the kind, and the value.
struct ExtensionValue<'v> {
    field: &'static str,
    contained_field: &'static str,
    kind: IdentifierKind,
    /// the data type's kind, as [`own_values`] reads it (`Telecom` for a ContactPoint of any system)
    data_type: IdentifierKind,
    value: &'v serde_json::Value,
}

/// Extensions known by their URL: the end of it (the core R4 extensions' base is
/// `http://hl7.org/fhir/StructureDefinition/`; a profile's own copy ends the same), the element of
/// its value, the kind and the fields. A relative's name (HIPAA Safe Harbor lists relatives' names)
/// is a string, so only its URL says what it is; a place of birth keeps the field it was reported under.
const EXTENSIONS_BY_URL: &[(&str, &str, IdentifierKind, &str, &str)] = &[
    (
        "patient-mothersMaidenName",
        "valueString",
        IdentifierKind::Name,
        "extension.mothersMaidenName",
        "contained.extension.mothersMaidenName",
    ),
    (
        "patient-birthPlace",
        "valueAddress",
        IdentifierKind::Address,
        "extension.birthPlace",
        "contained.extension.birthPlace",
    ),
    // on `_birthDate`: the time of birth
    (
        "patient-birthTime",
        "valueDateTime",
        IdentifierKind::BirthDate,
        "extension.birthTime",
        "contained.extension.birthTime",
    ),
    // on a HumanName: name parts written apart (a partner's name, a family name by parent)
    (
        "humanname-partner-name",
        "valueString",
        IdentifierKind::Name,
        "extension.partnerName",
        "contained.extension.partnerName",
    ),
    (
        "humanname-fathers-family",
        "valueString",
        IdentifierKind::Name,
        "extension.fathersFamily",
        "contained.extension.fathersFamily",
    ),
    (
        "humanname-mothers-family",
        "valueString",
        IdentifierKind::Name,
        "extension.mothersFamily",
        "contained.extension.mothersFamily",
    ),
    ("humanname-own-name", "valueString", IdentifierKind::Name, "extension.ownName", "contained.extension.ownName"),
];

/// Any other extension is identifying by the type of its value: a person's name, a phone or e-mail,
/// an address, an identifier say what they are whatever the URL (a profile's emergency contact, a
/// guardian, an insurance number). The kind of a ContactPoint is its system's ([`contact_point_kind`]).
const EXTENSIONS_BY_VALUE: &[(&str, IdentifierKind, &str, &str)] = &[
    ("valueHumanName", IdentifierKind::Name, "extension.valueHumanName", "contained.extension.valueHumanName"),
    (
        "valueContactPoint",
        IdentifierKind::Telecom,
        "extension.valueContactPoint",
        "contained.extension.valueContactPoint",
    ),
    ("valueAddress", IdentifierKind::Address, "extension.valueAddress", "contained.extension.valueAddress"),
    (
        "valueIdentifier",
        IdentifierKind::PatientIdentifier,
        "extension.valueIdentifier",
        "contained.extension.valueIdentifier",
    ),
];

/// The kind of a ContactPoint by its system: a phone (`phone`, `fax`, `sms`, `pager`), an e-mail, or
/// another telecom.
fn contact_point_kind(c: &serde_json::Value) -> IdentifierKind {
    match c.get("system").and_then(|x| x.as_str()) {
        Some("phone" | "fax" | "sms" | "pager") => IdentifierKind::Phone,
        Some("email") => IdentifierKind::Email,
        _ => IdentifierKind::Telecom,
    }
}

/// The extensions in `lists` (a resource's `extension` and `modifierExtension`), and the ones nested
/// in them (a complex extension's parts), whose value identifies a person ([`EXTENSIONS_BY_URL`],
/// [`EXTENSIONS_BY_VALUE`]), with their value. The depth is bounded by the JSON parser's own limit.
fn identifying_extensions<'v>(lists: &[Option<&'v serde_json::Value>]) -> Vec<ExtensionValue<'v>> {
    fn walk<'v>(list: &'v serde_json::Value, out: &mut Vec<ExtensionValue<'v>>) {
        for e in list.as_array().into_iter().flatten() {
            let url_end = e.get("url").and_then(|u| u.as_str()).and_then(|u| u.rsplit('/').next());
            let by_url = EXTENSIONS_BY_URL.iter().find(|x| Some(x.0) == url_end).and_then(|&(_, key, kind, f, cf)| {
                let value = e.get(key).filter(|v| present_value(v))?;
                Some(ExtensionValue { field: f, contained_field: cf, kind, data_type: kind, value })
            });
            let by_value = || {
                EXTENSIONS_BY_VALUE.iter().find_map(|&(key, kind, f, cf)| {
                    let value = e.get(key).filter(|v| present_value(v))?;
                    let data_type = kind;
                    let kind = if kind == IdentifierKind::Telecom { contact_point_kind(value) } else { kind };
                    Some(ExtensionValue { field: f, contained_field: cf, kind, data_type, value })
                })
            };
            if let Some(x) = by_url.or_else(by_value) {
                out.push(x);
            }
            if let Some(nested) = e.get("extension") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    for list in lists.iter().flatten() {
        walk(list, &mut out);
    }
    out
}

/// The values of an identifying extension, as [`own_values`] gives them: its string (a maiden name),
/// or the parts of its HumanName, ContactPoint, Address or Identifier.
fn extension_own_values(x: &ExtensionValue, into: &mut Vec<(IdentifierKind, String)>) {
    if x.kind == IdentifierKind::BirthDate {
        // a birth time is not searched for in notes, as `birthDate` is not
        return;
    }
    match x.value {
        serde_json::Value::String(s) => into.push((x.kind, s.clone())),
        // one element, where `own_values` reads a list
        v => own_values(&Some(serde_json::Value::Array(vec![v.clone()])), x.data_type, into),
    }
}

/// Strings under `keys` of a JSON object or of the objects of an array (at most 64: a value that
/// holds more is not a person's name or address).
fn strings<'v>(v: &'v serde_json::Value, keys: &[&str], out: &mut Vec<&'v str>, depth: usize) {
    use serde_json::Value;
    if depth > 8 || out.len() >= 64 {
        return;
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| strings(x, keys, out, depth + 1)),
        Value::Object(o) => {
            for (k, x) in o {
                if keys.contains(&k.as_str()) {
                    match x {
                        Value::String(s) => out.push(s),
                        Value::Array(a) => a.iter().filter_map(Value::as_str).for_each(|s| out.push(s)),
                        _ => {}
                    }
                }
            }
        }
        _ => {}
    }
}

/// The values of a HumanName, ContactPoint, Address or Identifier list, as (kind, value) to search
/// for in notes: name parts and the whole name, telecom values by their system, address lines, text
/// and postal code, identifier values.
fn own_values(v: &Option<serde_json::Value>, kind: IdentifierKind, into: &mut Vec<(IdentifierKind, String)>) {
    let Some(v) = v else { return };
    let mut found = Vec::new();
    match kind {
        IdentifierKind::Name => {
            strings(v, &["text", "family", "given"], &mut found, 0);
            // family and given names written together, in both orders
            let items: Vec<&serde_json::Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_else(|| vec![v]);
            for n in items {
                let mut family = Vec::new();
                let mut given = Vec::new();
                strings(n, &["family"], &mut family, 0);
                strings(n, &["given"], &mut given, 0);
                if let (Some(f), false) = (family.first(), given.is_empty()) {
                    let g = given.concat();
                    into.push((kind, format!("{f}{g}")));
                    into.push((kind, format!("{g}{f}")));
                }
            }
        }
        IdentifierKind::Telecom => {
            for t in v.as_array().into_iter().flatten() {
                let value = t.get("value").and_then(|x| x.as_str()).unwrap_or("");
                into.push((contact_point_kind(t), value.to_owned()));
            }
        }
        // the city and district too (a geographic unit below the state, as HIPAA's Safe Harbor counts
        // them): "lives 534 Erewhon St PleasantVille" kept the city when the street was redacted
        IdentifierKind::Address => strings(v, &["text", "line", "postalCode", "city", "district"], &mut found, 0),
        _ => strings(v, &["value"], &mut found, 0),
    }
    into.extend(found.into_iter().map(|s| (kind, s.to_owned())));
}

/// A resource's narrative (`text.div`: generated from its data, or written by hand, and then it may
/// name the patient): scanned as free text that is not kept ([`scan_only`]).
fn scan_narrative<'a>(
    text: &Option<Narrative<'_>>,
    subject: Option<&Cow<'a, str>>,
    resource: &'static str,
    out: &mut LineOut<'a>,
) {
    if let Some(div) = text.as_ref().and_then(|t| t.div.as_deref()) {
        scan_only(&xhtml_to_text(div), subject, resource, ("text.div", "text.div.subject_identifier"), out);
    }
}

/// The identifiers in a person's narrative (`text.div`): what the scanners find, and the resource's
/// structured values (`own`) repeated in it.
fn narrative_identifiers(div: &str, own: &[(IdentifierKind, String)], resource: &'static str, out: &mut LineOut) {
    let text = guard::visible(xhtml_to_text(div));
    let mut found = guard::scan(&text);
    let mut one = guard::subject::Store::default();
    for (k, v) in own {
        one.add("", *k, v);
    }
    found.extend(one.find("", &text, &mut 0));
    for (k, _) in guard::merge(found) {
        out.identifiers.push((k, resource, "text.div"));
    }
}

fn patient<'a>(line: &'a [u8], full_url_id: Option<&str>) -> std::result::Result<LineOut<'a>, Bad> {
    let mut p: Patient = from_line(line).map_err(|_| invalid_at::<Patient>(line, "not a valid Patient"))?;
    // a Patient of a Bundle without an id is the one its entry's `urn:uuid:` names (the references
    // of a transaction Bundle name it so)
    if p.id.is_none() {
        p.id = full_url_id.map(|id| Str(Cow::Owned(id.to_owned())));
    }
    // one whose id is not its entry's `urn:uuid:` is named both ways (the Bundle's references use the
    // fullUrl): the two are one record, linked as `Patient.link` links (one subject, its identifiers
    // searched for in the notes filed under either)
    let also = full_url_id.filter(|u| p.id.as_deref().is_some_and(|id| id != *u)).map(str::to_owned);
    let mut out = LineOut { resource: Some("Patient"), ..Default::default() };
    let mut own = Vec::new();
    let d = demographics::Demographics {
        name: &p.name,
        telecom: &p.telecom,
        address: &p.address,
        birth_date: &p.birth_date,
        identifier: &p.identifier,
        photo: &p.photo,
    };
    demographics::demographics(&d, "Patient", &mut out, &mut own);
    // contacts (relatives, guardians): their names, phones and addresses identify the patient too
    for c in p.contact.as_ref().and_then(|c| c.as_array()).into_iter().flatten() {
        for (key, kind, field) in [
            ("name", IdentifierKind::Name, "contact.name"),
            ("telecom", IdentifierKind::Telecom, "contact.telecom"),
            ("address", IdentifierKind::Address, "contact.address"),
        ] {
            let v = c.get(key).cloned();
            if present(&v) {
                out.identifiers.push((kind, "Patient", field));
                // a contact's name is one HumanName, not a list
                let v = if kind == IdentifierKind::Name { v.map(|n| serde_json::Value::Array(vec![n])) } else { v };
                own_values(&v, kind, &mut own);
            }
        }
    }
    for x in identifying_extensions(&[p.extension.as_ref(), p.modifier_extension.as_ref()]) {
        out.identifiers.push((x.kind, "Patient", x.field));
        extension_own_values(&x, &mut own);
    }
    // the extensions of its names, telecoms, addresses, contacts and primitives (`_birthDate`)
    demographics::line_sub_element_extensions(line, "Patient", &mut out, &mut own);
    if let Some(div) = p.text.as_ref().and_then(|t| t.div.as_deref()) {
        narrative_identifiers(div, &own, "Patient", &mut out);
    }
    if let (Some(id), Some(org)) =
        (p.id.as_deref(), p.managing_organization.as_ref().and_then(|o| o.reference.as_deref()))
    {
        out.site = Some((id.to_owned(), org.rsplit('/').next().unwrap_or(org).to_owned()));
    }
    out.patient = p.id.as_deref().map(str::to_owned);
    // every link type (replaced-by, replaces, refer, seealso) names a record of the same person: one
    // privacy unit, whose records are merged after the read
    // only references within the export (`Patient/id`, `urn:uuid:`): an absolute URL names a record of
    // another system, whose id may be another person's here
    out.links = p
        .link
        .iter()
        .filter_map(|l| l.other.as_ref())
        .filter(|r| {
            r.reference.as_deref().is_some_and(|s| {
                let s = s.trim();
                s.starts_with("Patient/") || s.starts_with("urn:uuid:")
            })
        })
        .filter_map(subject_id)
        .map(|s| s.into_owned())
        .chain(also)
        .collect();
    if let (Some(id), false) = (p.id.as_deref(), own.is_empty()) {
        out.own.push((id.to_owned(), own));
    }
    Ok(out)
}

/// How many Bundles deep entries are read: a Bundle's, and those of the Bundles in it (a
/// batch-response's search results); a Bundle deeper is counted (`bundle_not_read`), not read.
const MAX_BUNDLE_DEPTH: u8 = 2;

/// Entries of a Bundle above which they are parsed in parallel.
const PARALLEL_ENTRIES: usize = 64;

/// Entries parsed at a time when a Bundle is applied: what a Bundle holds parsed at once is bounded by
/// this, not by its size (a 64 MiB Bundle of tiny entries parsed whole took some 40 times its bytes).
const ENTRY_CHUNK: usize = 4096;

/// A Bundle's entry not parsed yet: the lines its resource starts below the Bundle's first, the
/// resource's bytes, the id its `urn:uuid:` `fullUrl` gives, how many Bundles hold it.
/// A Bundle entry's resource to parse: (the lines it starts below the Bundle's first, its bytes, the id
/// its `fullUrl` gives, its depth, what its `response` says of its version ([`EntryVersion`])).
type Pending<'a> = (u64, &'a [u8], Option<Cow<'a, str>>, u8, EntryVersion);

/// What a Bundle entry's `response` (a history's, a transaction-response's) says of its resource's
/// version: `lastModified` in milliseconds and the version of `etag` (`W/"3"`), for a resource whose
/// `meta` does not give them.
#[derive(Clone, Copy, Debug, Default)]
struct EntryVersion {
    ms: Option<i64>,
    version: Option<u64>,
}

impl EntryVersion {
    /// `version` with what its resource's `meta` lacks taken from its entry: a rank without a time gets
    /// the entry's `lastModified` over its versionId (else the etag's); one without a versionId, the
    /// etag's (found by a reviewer: a history whose versions give their time only in the entry ranked
    /// by versionId alone, below a timed DELETE that came before the latest of them).
    fn fill(self, version: &mut Version) {
        let timed = version.rank >= 1 << 60;
        let own = version.rank & 0xFFFF;
        let low = if own == 0 { self.version.unwrap_or(0).min(0xFFFF) } else { own };
        version.rank = match (timed, self.ms) {
            (true, _) => version.rank,
            (false, Some(ms)) => timed_rank(ms, low),
            (false, None) => low,
        };
    }
}

/// A Bundle's entries, found (not parsed: each is parsed as a line of its own would be when the Bundle
/// is applied, [`parse_pending`], a chunk at a time), in entry order; an entry without a resource (a
/// transaction's `DELETE`) is none.
fn bundle<'a>(line: &'a [u8], depth: u8) -> std::result::Result<LineOut<'a>, Bad> {
    #[derive(Deserialize)]
    struct Entry<'a> {
        #[serde(rename = "fullUrl", borrow)]
        full_url: Option<Str<'a>>,
        #[serde(borrow)]
        resource: Option<&'a serde_json::value::RawValue>,
        #[serde(default, borrow)]
        request: Option<&'a serde_json::value::RawValue>,
        #[serde(default, borrow)]
        response: Option<&'a serde_json::value::RawValue>,
    }
    // (any shape: a request or response that is no object is no DELETE)
    #[derive(Deserialize)]
    struct Request<'a> {
        #[serde(default, borrow)]
        method: Loose<'a>,
        #[serde(default, borrow)]
        url: Loose<'a>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Response<'a> {
        #[serde(default, borrow)]
        last_modified: Loose<'a>,
        #[serde(default, borrow)]
        etag: Loose<'a>,
    }
    let mut deletes = Vec::new();
    let mut not_applied = 0u64;
    #[derive(Deserialize)]
    struct Bundle<'a> {
        #[serde(default, borrow)]
        entry: Vec<Entry<'a>>,
        #[serde(rename = "type", default, borrow)]
        kind: Loose<'a>,
    }
    let b: Bundle = from_line(line).map_err(|_| invalid_at::<Bundle>(line, "not a valid Bundle"))?;
    // each entry's resource, with the lines it starts below the Bundle's first
    let mut below = 0u64;
    let mut from = 0usize;
    let mut without = 0u64;
    let entries: Vec<Pending<'a>> = b
        .entry
        .into_iter()
        .filter_map(|e| {
            let Some(raw) = e.resource.map(|r| r.get().as_bytes()).filter(|r| *r != b"null") else {
                let request = e.request.and_then(|r| serde_json::from_str::<Request>(r.get()).ok());
                let delete = request
                    .as_ref()
                    .is_some_and(|r| r.method.0.as_deref().is_some_and(|m| m.trim().eq_ignore_ascii_case("DELETE")));
                if !delete {
                    without += 1;
                    return None;
                }
                let response = e.response.and_then(|r| serde_json::from_str::<Response>(r.get()).ok());
                let modified = response.as_ref().and_then(|r| r.last_modified.0.as_deref());
                match request.as_ref().and_then(|r| r.url.0.as_deref()).and_then(|u| deletion(u, modified)) {
                    Some(d) => deletes.push(d),
                    None => not_applied += 1,
                }
                return None;
            };
            // a borrowed raw value lies inside the line
            let at = (raw.as_ptr() as usize).checked_sub(line.as_ptr() as usize).filter(|&a| a <= line.len())?;
            below += memchr::memchr_iter(b'\n', &line[from.min(at)..at]).count() as u64;
            from = at;
            let id = e.full_url.and_then(|u| match u.0 {
                Cow::Borrowed(b) => b.trim().strip_prefix("urn:uuid:").map(Cow::Borrowed),
                Cow::Owned(o) => o.trim().strip_prefix("urn:uuid:").map(|id| Cow::Owned(id.to_owned())),
            });
            let response = e.response.and_then(|r| serde_json::from_str::<Response>(r.get()).ok());
            let entry = response.map_or(EntryVersion::default(), |r| EntryVersion {
                ms: r.last_modified.0.as_deref().and_then(|u| instant_ms(u.trim())),
                version: r.etag.0.as_deref().and_then(etag_version),
            });
            Some((below, raw, id.filter(|id| !id.is_empty()), depth, entry))
        })
        .collect();
    let mut out = LineOut {
        resource: Some(reportable::resource_type("Bundle").unwrap_or(reportable::OTHER_RESOURCE_TYPE)),
        entries,
        ..Default::default()
    };
    // a DELETE is the input's own in a history, or a transaction or batch (a bulk export's deleted
    // resources) read as a file's own Bundle; a Bundle held as data (a document, a collection, one
    // inside another) deletes nothing
    // (`depth` counts this Bundle: 1 for a file's own)
    let applies = depth == 1 && matches!(b.kind.0.as_deref().map(str::trim), Some("history" | "transaction" | "batch"));
    if !applies {
        without += (deletes.len() as u64) + not_applied;
        deletes.clear();
        not_applied = 0;
    }
    for (resource, id, rank) in deletes {
        if VERSIONED.contains(&resource.as_str()) {
            out.deletes.push((resource, id, rank));
        } else {
            not_applied += 1;
        }
    }
    // each entry counted (a Bundle of 38 counted 1)
    for _ in 0..not_applied {
        // (a conditional delete, or of a resource whose removal is not applied: a Patient's other
        // resources are read as before)
        out.info.push((Severity::Warning, "delete_not_applied", "Bundle", "entry.request"));
    }
    for _ in 0..without {
        // (a transaction's request without its resource: nothing to read, and said)
        out.info.push((Severity::Info, "entry_without_resource", "Bundle", "entry.resource"));
    }
    Ok(out)
}

/// Pending entries parsed, in order (in parallel where there are many).
fn parse_pending<'a>(chunk: &[Pending<'a>], opts: &ReadOptions) -> Vec<(u64, LineOut<'a>)> {
    use rayon::prelude::*;
    let parse = |(below, raw, id, depth, entry): &Pending<'a>| {
        let mut out = parse_entry(raw, opts, id.as_deref(), *depth);
        for v in out.version.iter_mut().chain(out.by_url.iter_mut().flat_map(|n| n.version.iter_mut())) {
            entry.fill(v);
        }
        (*below, out)
    };
    if chunk.len() >= PARALLEL_ENTRIES {
        chunk.par_iter().map(parse).collect()
    } else {
        chunk.iter().map(parse).collect()
    }
}

fn parse_line<'a>(line: &'a [u8], opts: &ReadOptions) -> LineOut<'a> {
    parse_entry(line, opts, None, 0)
}

/// [`parse_line`] of a resource that may be a Bundle's entry: `full_url_id` the id its entry's
/// `fullUrl` (`urn:uuid:...`) gives it, `depth` how many Bundles hold it (a batch-response's search
/// results are a Bundle in a Bundle; deeper ones are not read, [`MAX_BUNDLE_DEPTH`]).
fn parse_entry<'a>(line: &'a [u8], opts: &ReadOptions, full_url_id: Option<&str>, depth: u8) -> LineOut<'a> {
    let mut out = parse_resource(line, opts, full_url_id, depth).unwrap_or_else(LineOut::bad);
    // one searcher for every line (built per call, it cost more than the search)
    static CONTAINED: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"contained\""));
    if out.bad.is_none() && CONTAINED.find(line).is_some() {
        contained_resources(line, opts, &mut out);
    }
    out
}

/// The Patients, RelatedPersons and Persons inside a resource (`contained`). The lines that hold one
/// are found by a byte search first (most lines have none).
fn contained_resources(line: &[u8], opts: &ReadOptions, out: &mut LineOut) {
    #[derive(Deserialize)]
    struct Holder {
        #[serde(default)]
        contained: Vec<serde_json::Value>,
    }
    /// what a contained Observation takes from its holder where it has none of its own (read apart:
    /// a key written twice fails a struct that has it, and the contained resources are scanned all the
    /// same)
    #[derive(Deserialize, Default)]
    struct Inherited {
        subject: Option<serde_json::Value>,
        category: Option<serde_json::Value>,
        #[serde(rename = "effectiveDateTime")]
        effective_date_time: Option<serde_json::Value>,
        #[serde(rename = "effectivePeriod")]
        effective_period: Option<serde_json::Value>,
        issued: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Status<'a> {
        #[serde(borrow)]
        status: Option<Str<'a>>,
    }
    let Ok(h) = from_line::<Holder>(line) else { return };
    // the results of a report entered in error or cancelled are not read, as the report is not
    let inactive_report = || from_line::<Status>(line).is_ok_and(|s| inactive(&s.status));
    let resource = out.resource.unwrap_or(reportable::OTHER_RESOURCE_TYPE);
    let inherited = || from_line::<Inherited>(line).unwrap_or_default();
    let mut i: Option<Inherited> = None;
    for c in &h.contained {
        match c.get("resourceType").and_then(|t| t.as_str()) {
            Some("Patient") => contained_patient(c, resource, out),
            Some(rt @ ("RelatedPerson" | "Person")) => contained_person(c, rt, resource, out),
            // a DiagnosticReport's results written inside it (HL7's CBC and micro examples): read as
            // Observations, with the report's subject, category and time where they have none
            Some("Observation") if resource == "DiagnosticReport" && inactive_report() => {}
            Some("Observation") if resource == "DiagnosticReport" => {
                let h = i.get_or_insert_with(|| {
                    let mut h = inherited();
                    // the report's `subject.display` (and a logical reference's identifier) is the
                    // report's finding, once (it was counted as each contained result's)
                    if let Some(subject) = h.subject.as_mut().and_then(|s| s.as_object_mut()) {
                        // (unless the report, read as a note, counted it already)
                        for (key, finding) in [
                            ("display", (IdentifierKind::Name, resource, "subject.display")),
                            ("identifier", (IdentifierKind::PatientIdentifier, resource, "subject.identifier")),
                        ] {
                            if subject.remove(key).is_some() && !out.identifiers.contains(&finding) {
                                out.identifiers.push(finding);
                            }
                        }
                    }
                    h
                });
                let mut o = c.clone();
                let inherited = [
                    ("subject", &h.subject),
                    ("category", &h.category),
                    ("effectiveDateTime", &h.effective_date_time),
                    ("effectivePeriod", &h.effective_period),
                    ("issued", &h.issued),
                ];
                let has_time = ["effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"]
                    .iter()
                    .any(|k| o.get(k).is_some());
                if let Some(map) = o.as_object_mut() {
                    for (key, value) in inherited {
                        let time = key.starts_with("effective") || key == "issued";
                        if let (Some(v), false) = (value, map.contains_key(key) || (time && has_time)) {
                            map.insert(key.to_owned(), v.clone());
                        }
                    }
                }
                let bytes = serde_json::to_vec(&o).unwrap_or_default();
                let read = observation(&bytes, opts);
                match read {
                    Ok(read) => out.take_contained(read),
                    Err(_) => {
                        let f = (Severity::Warning, "contained_observation_not_read", resource, "contained");
                        if !out.info.contains(&f) {
                            out.info.push(f);
                        }
                    }
                };
            }
            _ => {}
        }
    }
}

/// A RelatedPerson or Person inside a resource (a Patient's relative, written in the Patient): read
/// as a line of its own is ([`related_person`], [`person`]), its patient reference `#` naming the
/// Patient that holds it. Its findings are the holding resource's, under `contained.` fields as a
/// contained Patient's are; its values join the identifiers of the patients it names, to be searched
/// for in their notes. One that does not parse as its type has the findings a contained Patient has.
fn contained_person(c: &serde_json::Value, rt: &str, resource: &'static str, out: &mut LineOut) {
    let Ok(bytes) = serde_json::to_vec(c) else { return };
    let container = out.patient.clone();
    let read = if rt == "Person" {
        person::person(&bytes, container.as_deref())
    } else {
        related_person::related_person(&bytes, container.as_deref())
    };
    let Ok(inner) = read else {
        contained_patient(c, resource, out);
        return;
    };
    for (kind, _, field) in inner.identifiers {
        out.identifiers.push((kind, resource, contained_field(field)));
    }
    for i in inner.info {
        if !out.info.contains(&i) {
            out.info.push(i);
        }
    }
    out.own.extend(inner.own);
    out.related_patients.extend(inner.related_patients);
    out.uuid_links.extend(inner.uuid_links);
}

/// The field of a finding of a resource when it is contained in another: `contained.` and its field.
fn contained_field(field: &'static str) -> &'static str {
    const FIELDS: &[(&str, &str)] = &[
        ("name", "contained.name"),
        ("telecom", "contained.telecom"),
        ("address", "contained.address"),
        ("birthDate", "contained.birthDate"),
        ("identifier", "contained.identifier"),
        ("photo", "contained.photo"),
        ("text.div", "contained.text.div"),
        ("patient.display", "contained.patient.display"),
        ("link.target.display", "contained.link.target.display"),
    ];
    let by_url = EXTENSIONS_BY_URL.iter().map(|x| (x.3, x.4));
    let by_value = EXTENSIONS_BY_VALUE.iter().map(|x| (x.2, x.3));
    FIELDS
        .iter()
        .copied()
        .chain(by_url)
        .chain(by_value)
        .find(|(f, _)| *f == field)
        .map(|(_, cf)| cf)
        .or_else(|| demographics::contained_sub_element_field(field))
        .unwrap_or("contained")
}

/// A Patient inside another resource (`contained`, as the official R4 examples put a newborn's
/// record in its Apgar scores): its name, telecom, address, birth date, identifiers and identifying
/// extensions ([`identifying_extensions`]) are identifier findings of the resource that holds it, as a
/// Patient of its own would be.
fn contained_patient(c: &serde_json::Value, resource: &'static str, out: &mut LineOut) {
    for (key, kind, field) in [
        ("name", IdentifierKind::Name, "contained.name"),
        ("telecom", IdentifierKind::Telecom, "contained.telecom"),
        ("address", IdentifierKind::Address, "contained.address"),
        ("birthDate", IdentifierKind::BirthDate, "contained.birthDate"),
        ("identifier", IdentifierKind::PatientIdentifier, "contained.identifier"),
        ("photo", IdentifierKind::Photo, "contained.photo"),
    ] {
        if present(&c.get(key).cloned()) {
            out.identifiers.push((kind, resource, field));
        }
    }
    for x in identifying_extensions(&[c.get("extension"), c.get("modifierExtension")]) {
        out.identifiers.push((x.kind, resource, x.contained_field));
    }
    if let Some(map) = c.as_object() {
        // (the values are no subject's own: the contained Patient is not the line's subject)
        demographics::sub_element_extensions(
            map,
            |kind, _, contained_field| out.identifiers.push((kind, resource, contained_field)),
            &mut Vec::new(),
        );
    }
}

/// An OperationOutcome: a warning where an issue is an error (or fatal, or a warning: the export may
/// lack what it failed to write), else (information only, as a search's outcome entry often is) an
/// info finding. Its text is not read (it may name a patient).
fn operation_outcome<'a>(line: &[u8]) -> LineOut<'a> {
    #[derive(Deserialize)]
    struct Issue {
        severity: Option<String>,
    }
    #[derive(Deserialize)]
    struct Outcome {
        #[serde(default)]
        issue: Vec<Issue>,
    }
    let serious = from_line::<Outcome>(line)
        .map_or(true, |o| o.issue.iter().any(|i| !matches!(i.severity.as_deref(), Some("information"))));
    let severity = if serious { Severity::Warning } else { Severity::Info };
    LineOut {
        resource: Some(reportable::resource_type("OperationOutcome").unwrap_or(reportable::OTHER_RESOURCE_TYPE)),
        info: smallvec::smallvec![(severity, "operation_outcome", "OperationOutcome", "issue")],
        ..Default::default()
    }
}

fn parse_resource<'a>(
    line: &'a [u8],
    opts: &ReadOptions,
    full_url_id: Option<&str>,
    depth: u8,
) -> std::result::Result<LineOut<'a>, Bad> {
    const OBS: &[u8] = br#"{"resourceType":"Observation""#;
    if line.starts_with(OBS) {
        return observation(line, opts);
    }
    let rt = match from_line::<Peek>(line) {
        Ok(Peek { resource_type: Some(rt) }) => rt,
        Ok(_) => return Err("no resourceType"),
        Err(_) if std::str::from_utf8(line).is_err() => {
            return Err("not UTF-8 (FHIR JSON is UTF-8: a Shift_JIS or other export is to be converted first)")
        }
        Err(e) if e.is_syntax() || e.is_eof() => return Err("not JSON"),
        // an object whose resourceType is a number, or given twice
        Err(_) if line.trim_ascii_start().starts_with(b"{") => return Err("resourceType is not one string"),
        Err(_) => return Err("not a JSON object"),
    };
    let mut out = match &*rt {
        "Observation" => observation(line, opts),
        "DocumentReference" => document_reference(line, opts),
        "DiagnosticReport" => diagnostic_report(line, opts),
        "Composition" => composition(line, opts),
        // an export's error file (`error` in the bulk manifest) or a search's `outcome` entry: said, as
        // the export may lack what it failed to write (its text may name a patient: not printed)
        "OperationOutcome" => Ok(operation_outcome(line)),
        "Encounter" => encounter(line, opts),
        "Patient" => patient(line, full_url_id),
        "RelatedPerson" => related_person::related_person(line, None),
        "Person" => person::person(line, None),
        "Binary" if depth > 0 => Ok(bundle_binary(line, full_url_id)),
        // a Bundle (a line of one, a `.json` document as Synthea and FHIR servers write them): its
        // entries are read as lines; a Bundle inside one is not read, and said
        "Bundle" if depth < MAX_BUNDLE_DEPTH => bundle(line, depth + 1),
        "Bundle" => Ok(LineOut {
            resource: Some(reportable::resource_type("Bundle").unwrap_or(reportable::OTHER_RESOURCE_TYPE)),
            ..Default::default()
        }
        .unusable("bundle_not_read", "Bundle", "entry")),
        other => Ok(LineOut {
            resource: Some(reportable::resource_type(other).unwrap_or(reportable::OTHER_RESOURCE_TYPE)),
            ..Default::default()
        }),
    };
    // what a Person's `urn:uuid:` link may name besides a Patient ([`person`]): its id, read again
    // (these types are few in an export)
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Option<Str<'a>>,
    }
    if let (Ok(out), true) =
        (&mut out, matches!(&*rt, "Practitioner" | "PractitionerRole" | "RelatedPerson" | "Person"))
    {
        if let Ok(Id { id: Some(id) }) = from_line::<Id>(line) {
            out.not_patient = Some(id.0.into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lone_surrogate_escapes_mended_in_place_pairs_and_escaped_backslashes_kept() {
        for (text, want, n) in [
            (r#"{"a":"x\ud800y"}"#, r#"{"a":"x\ue000y"}"#, 1),
            (r#"{"a":"\udc00"}"#, r#"{"a":"\ue400"}"#, 1),
            (r#"{"a":"\ud83d\ude00"}"#, r#"{"a":"\ud83d\ude00"}"#, 0),
            (r#"{"a":"\uD83D\uDE00\uD83D"}"#, r#"{"a":"\uD83D\uDE00\ue03d"}"#, 1),
            (r#"{"a":"\ud83d\u0041"}"#, r#"{"a":"\ue03d\u0041"}"#, 1),
            (r#"{"a":"\\ud800"}"#, r#"{"a":"\\ud800"}"#, 0),
            (r#"{"a":"\\\ud800"}"#, r#"{"a":"\\\ue000"}"#, 1),
            (r#"{"a":"\u00e9\/\n"}"#, r#"{"a":"\u00e9\/\n"}"#, 0),
            // cut short: nothing to mend, nothing read past the end
            (r#"{"a":"\ud8"#, r#"{"a":"\ud8"#, 0),
            (r#"{"a":"\ud800\"#, r#"{"a":"\ue000\"#, 1),
            ("\\", "\\", 0),
            ("\\u", "\\u", 0),
        ] {
            let mut b = text.as_bytes().to_vec();
            assert_eq!(super::mend_lone_surrogates(&mut b), n, "{text}");
            assert_eq!(std::str::from_utf8(&b).unwrap(), want, "{text}");
            if n > 0 && want.ends_with('}') {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                assert!(v["a"].as_str().unwrap().chars().any(|c| ('\u{e000}'..='\u{e7ff}').contains(&c)), "{text}");
            }
        }
    }

    #[test]
    fn the_binary_an_attachment_url_names() {
        for (url, key) in [
            ("Binary/b1", Some("b1")),
            (" https://ehr.example.org/api/FHIR/R4/Binary/eX9.a-1 ", Some("eX9.a-1")),
            ("Binary/b1/_history/2", Some("b1")),
            ("Binary/b1?_format=json", Some("b1")),
            ("urn:uuid:5e4b1c3a", Some("5e4b1c3a")),
            ("Binary/", None),
            ("https://h/Binary/b1/extra/x", None),
            ("Binary/b1/_history/", None),
            ("https://h/MyBinary/b1", None),
            ("urn:uuid:", None),
            ("https://h/docs/note.txt", None),
            ("https://h/fhir/Binary/abc?next=/Binary/zzz", Some("abc")),
            ("https://h/fhir/Binary/abc/_history/3#x", Some("abc")),
        ] {
            assert_eq!(super::binary_key(url), key, "{url}");
        }
    }
}
