//! The closed sets that strings from the data must belong to before a report prints them.
//!
//! A QA report names what an input holds, but an export can put anything in any string field (a phone
//! number as a unit, a name as a code system). So a string read from the data reaches output only when
//! it is one of a fixed list written here (or in the catalogue): a FHIR R4 resource type, an encounter
//! class of the v3 ActEncounterCode value set, a known code system URI. The functions return the
//! list's own `&'static str`, never the input, so nothing else can slip through. Everything else is
//! counted under a placeholder. Units have their own gate, `check::reportable_unit`.

use super::catalog;

/// The resource types of FHIR R4 (4.0.1).
#[rustfmt::skip]
pub const FHIR_R4_RESOURCE_TYPES: &[&str] = &[
    "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse",
    "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct", "BodyStructure", "Bundle",
    "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry", "ChargeItem", "ChargeItemDefinition", "Claim",
    "ClaimResponse", "ClinicalImpression", "CodeSystem", "Communication", "CommunicationRequest",
    "CompartmentDefinition", "Composition", "ConceptMap", "Condition", "Consent", "Contract", "Coverage",
    "CoverageEligibilityRequest", "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition",
    "DeviceMetric", "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest",
    "DocumentReference", "EffectEvidenceSynthesis", "Encounter", "Endpoint", "EnrollmentRequest",
    "EnrollmentResponse", "EpisodeOfCare", "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario",
    "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal", "GraphDefinition", "Group", "GuidanceResponse",
    "HealthcareService", "ImagingStudy", "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation",
    "ImplementationGuide", "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location", "Measure",
    "MeasureReport", "Media", "Medication", "MedicationAdministration", "MedicationDispense",
    "MedicationKnowledge", "MedicationRequest", "MedicationStatement", "MedicinalProduct",
    "MedicinalProductAuthorization", "MedicinalProductContraindication", "MedicinalProductIndication",
    "MedicinalProductIngredient", "MedicinalProductInteraction", "MedicinalProductManufactured",
    "MedicinalProductPackaged", "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect",
    "MessageDefinition", "MessageHeader", "MolecularSequence", "NamingSystem", "NutritionOrder", "Observation",
    "ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization",
    "OrganizationAffiliation", "Parameters", "Patient", "PaymentNotice", "PaymentReconciliation", "Person",
    "PlanDefinition", "Practitioner", "PractitionerRole", "Procedure", "Provenance", "Questionnaire",
    "QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchDefinition", "ResearchElementDefinition",
    "ResearchStudy", "ResearchSubject", "RiskAssessment", "RiskEvidenceSynthesis", "Schedule", "SearchParameter",
    "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition", "StructureDefinition", "StructureMap",
    "Subscription", "Substance", "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein",
    "SubstanceReferenceInformation", "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery",
    "SupplyRequest", "Task", "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet",
    "VerificationResult", "VisionPrescription",
];

/// What a resource type outside [`FHIR_R4_RESOURCE_TYPES`] is counted under.
pub const OTHER_RESOURCE_TYPE: &str = "(not a FHIR R4 resource type)";

/// Encounter classes: the v3 ActEncounterCode value set, which R4's `Encounter.class` binds to.
pub const ENCOUNTER_CLASSES: &[&str] =
    &["AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR"];

/// Code system URIs a report may print: those the readers know, and the other common public ones of
/// clinical exports (JP Core's JLAC and Japanese code systems among them).
const OTHER_PUBLIC_SYSTEMS: &[&str] = &[
    "http://unitsofmeasure.org",
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-9-cm",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://www.whocc.no/atc",
    "http://terminology.hl7.org/CodeSystem/v2-0074",
    "http://terminology.hl7.org/CodeSystem/v2-0203",
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
    "http://terminology.hl7.org/CodeSystem/v3-ActEncounterCode",
    "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
    "http://terminology.hl7.org/CodeSystem/condition-category",
    "http://terminology.hl7.org/CodeSystem/diagnostic-service-sections",
    "http://hl7.org/fhir/observation-category",
    "urn:oid:1.2.392.200119.4.504",
    "urn:oid:1.2.392.200119.4.1005",
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS",
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationCategory_CS",
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationVitalSignsCode_CS",
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_DocumentCodes_CS",
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_Sex_CS",
];

/// The resource type as the list spells it, if it is a FHIR R4 resource type.
pub fn resource_type(rt: &str) -> Option<&'static str> {
    FHIR_R4_RESOURCE_TYPES.iter().find(|r| **r == rt).copied()
}

/// The encounter class as the value set spells it, if it is one.
pub fn encounter_class(code: &str) -> Option<&'static str> {
    ENCOUNTER_CLASSES.iter().find(|c| **c == code).copied()
}

/// The code system URI as the list spells it, if it is a known one.
pub fn code_system(system: &str) -> Option<&'static str> {
    catalog::KNOWN_SYSTEMS.iter().chain(OTHER_PUBLIC_SYSTEMS).find(|s| **s == system).copied()
}

/// A value from a config or an input as a message may quote it: only when it looks like a name from a
/// fixed vocabulary (lowercase ASCII letters, digits, `_`, `-`, `.`, starting with a letter, at most 64
/// bytes, at most 6 digits: `creatinine`, `ed_admission`, `held_out`); anything else is replaced, so a
/// mistyped value that holds a phone number, an ID number or a name is never echoed.
pub fn quoted(value: &str) -> String {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let plain = value.len() <= 64
        && value.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
        && digits <= 6;
    // a number of a few digits (`-20`, `1e-5`), or a TOML token (`=`, `-`, `]`): no name or id
    let number = value.len() <= 16 && digits <= 6 && value.trim().parse::<f64>().is_ok_and(f64::is_finite);
    let token = (1..=2).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_punctuation());
    let plain = plain || number || token;
    if plain {
        format!("{value:?}")
    } else {
        "(a value that is not printed)".to_owned()
    }
}

/// A TOML (or serde) error as `line L, column C: message`, without the source line the TOML crate
/// quotes, and with every quoted fragment of the message passed through [`quoted`] (serde's messages
/// quote mistyped values: `invalid type: string "...", expected ...`).
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|span| {
        let before = &text.as_bytes()[..span.start.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        let key = key_at(text, span.start).map(|k| format!(", {k}")).unwrap_or_default();
        format!("line {line}, column {column}{key}: ")
    });
    // the string the error is about, taken out of the message whole first: a value holding a quote or
    // a backtick would end the fragment `redact_quoted` finds early and show the rest
    let mut msg = e.message().to_owned();
    // (only where the message quotes it: replacing every occurrence of a short value's text took the
    // letters out of the message's own words, `schedule = "n"` gave `u(..)k(..)ow..`)
    if let Some(value) = e.span().and_then(|span| text.get(span)).and_then(string_literal) {
        if !value.is_empty() && !quoted(&value).starts_with('"') {
            for form in [format!("{value:?}"), format!("\"{value}\""), format!("`{value}`")] {
                msg = msg.replace(&form, "\u{1}");
            }
        }
    }
    // a known key written with capitals (`Target_Epsilon`) is named in the form the config takes; one
    // mistyped (`epocs`), the known key it is closest to (found by a tester: `epocs` was told "keys are
    // lowercase: `epocs`")
    let unknown = e.message().strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')).map(|f| f.0);
    let expected: Vec<&str> = e
        .message()
        .split_once("expected ")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let hint = match unknown {
        Some(field)
            if field != field.to_ascii_lowercase() && expected.contains(&field.to_ascii_lowercase().as_str()) =>
        {
            format!(" (keys are lowercase: `{}`)", field.to_ascii_lowercase())
        }
        Some(field) if quoted(field).starts_with('"') => expected
            .iter()
            .map(|k| (edit_distance(field, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    // full-width letters (a Japanese input method's `ｅｐｏｃｈｓ`) where the error is
    let wide = e
        .span()
        .and_then(|span| text.get(span.start..(span.end.max(span.start + 1)).min(text.len())))
        .is_some_and(|t| t.chars().any(|c| ('\u{FF01}'..='\u{FF5E}').contains(&c) || c == '\u{3000}'));
    let hint =
        if wide { format!("{hint} (full-width characters: keys and values are written in ASCII)") } else { hint };
    format!("{}{}{hint}", at.unwrap_or_default(), redact_quoted(&msg).replace('\u{1}', "(a value that is not printed)"))
}

/// The Levenshtein distance of two short strings (keys).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The string a TOML string literal (`"..."`, `'...'`, multi-line) holds; `None` for another value.
fn string_literal(lit: &str) -> Option<String> {
    let lit = lit.trim();
    if !lit.starts_with(['"', '\'']) {
        return None;
    }
    match toml::from_str::<toml::Table>(&format!("v = {lit}")).ok()?.remove("v")? {
        toml::Value::String(s) => Some(s),
        _ => None,
    }
}

/// What the line holding byte `pos` names, when its names are plain ([`quoted`] would print them):
/// `key features.buckets` (the table header in force there and the name before `=`), or `table
/// model.head` on a table header (a table given twice); else `None`.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let plain = |s: &str| quoted(s).starts_with('"');
    let header = |t: &str| {
        t.trim_start_matches('[').split_once(']').map(|(h, _)| h.trim().to_owned()).filter(|_| t.starts_with('['))
    };
    let mut table = String::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let t = line.trim();
        if pos >= start && pos < end.max(start + 1) {
            if let Some(h) = header(t) {
                return plain(&h).then(|| format!("table {h}"));
            }
            let name = t.split_once('=')?.0.trim();
            if !plain(name) {
                return None;
            }
            return Some(format!("key {}", if table.is_empty() { name.to_owned() } else { format!("{table}.{name}") }));
        }
        if let Some(h) = header(t) {
            table = if plain(&h) { h } else { String::new() };
        }
        start = end;
    }
    None
}

/// Replaces each `"..."` or `` `...` `` fragment of a message by [`quoted`] of its content.
pub fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(open) = rest.find(['"', '`']) {
        let q = rest.as_bytes()[open];
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(q as char) {
            Some(close) => {
                let inner = &after[..close];
                match quoted(inner).as_str() {
                    p if p.starts_with('"') => {
                        out.push(q as char);
                        out.push_str(inner);
                        out.push(q as char);
                    }
                    p => out.push_str(p),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str("(a value that is not printed)");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_holding_a_backtick_or_a_quote_was_shown_past_it() {
        // found by the train_config fuzz target: `unknown variant `a`b`` closed the fragment early
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        enum Unit {
            Subject,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct C {
            unit: Unit,
            n: f64,
        }
        for v in ["Hanako `Suzuki` 090-1234-5678", "taro\"yamada\" 03-5555-0199", "a`b"] {
            let text = format!("unit = {}\nn = 1.0\n", toml::Value::String(v.into()));
            let e = toml::from_str::<C>(&text).unwrap_err();
            let shown = toml_error(&text, &e);
            assert!(shown.contains("(a value that is not printed)"), "{shown}");
            for part in ["Suzuki", "090", "yamada", "0199", "b`"] {
                assert!(!shown.contains(part), "{shown}");
            }
            let text = format!("unit = \"Subject\"\nn = {}\n", toml::Value::String(v.into()));
            let shown = toml_error(&text, &toml::from_str::<C>(&text).unwrap_err());
            assert!(!shown.contains("Suzuki") && !shown.contains("yamada"), "{shown}");
        }
    }

    #[test]
    fn toml_type_error_lost_the_key_when_the_source_line_was_dropped() {
        let text = "input = \"x\"\n[features]\nbuckets = 1e9\n";
        let e = toml::from_str::<toml::Table>(text).err();
        assert!(e.is_none(), "valid TOML");
        assert_eq!(key_at(text, text.find("1e9").unwrap()).as_deref(), Some("key features.buckets"));
        assert_eq!(key_at(text, 2).as_deref(), Some("key input"));
        // a key that is not a plain name (it could be anything a user pasted) is not printed
        let odd = "[features]\n\"090-1234-5678\" = 3\n";
        assert_eq!(key_at(odd, odd.find('3').unwrap()), None);
    }

    #[test]
    fn a_table_given_twice_is_named() {
        let text = "[model.head]\ntype = \"binary\"\n\n[model.head]\ntype = \"binary\"\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let msg = toml_error(text, &e);
        assert!(msg.starts_with("line 4, column ") && msg.contains("table model.head"), "{msg}");
        let odd = "[\"Yamada Taro\"]\na = 1\n[\"Yamada Taro\"]\na = 1\n";
        let e = toml::from_str::<toml::Table>(odd).unwrap_err();
        assert!(!toml_error(odd, &e).contains("Yamada"), "{}", toml_error(odd, &e));
    }

    #[test]
    fn a_hidden_value_is_taken_out_where_quoted_not_from_the_messages_words() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        #[allow(dead_code)]
        enum Schedule {
            Constant,
            Cosine,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Optim {
            schedule: Schedule,
        }
        // "n" is a plain name: shown; "N" is not: hidden where quoted, the message's n's kept
        for (value, shown) in [("n", true), ("N", false), ("Taro n", false)] {
            let text = format!("schedule = {value:?}\n");
            let e = toml::from_str::<Optim>(&text).unwrap_err();
            let msg = toml_error(&text, &e);
            assert!(msg.contains("unknown variant") && msg.contains("`constant`"), "{msg}");
            assert_eq!(msg.contains("(a value that is not printed)"), !shown, "{msg}");
            assert!(!msg.contains("Taro"), "{msg}");
        }
    }

    #[test]
    fn a_known_key_written_with_capitals_is_named_in_lowercase() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Privacy {
            target_epsilon: Option<f64>,
            delta: Option<f64>,
        }
        let err = |text: &str| toml_error(text, &toml::from_str::<Privacy>(text).unwrap_err());
        let shown = err("delta = 1e-5\nTarget_Epsilon = 3.0\n");
        assert!(shown.starts_with("line 2, column 1: unknown field (a value that is not printed)"), "{shown}");
        assert!(shown.ends_with(" (keys are lowercase: `target_epsilon`)"), "{shown}");
        // no hint where the lowercase form is no key, and nothing of the written key shown
        let shown = err("Taro_Yamada = 3.0\n");
        assert!(!shown.contains("lowercase") && !shown.contains("Taro") && !shown.contains("taro"), "{shown}");
    }

    /// Found by an outside-in tester: `epocs` was told "keys are lowercase: `epocs`", `warmup_steps =
    /// -20` hid the -20, and a key in full-width letters (a Japanese input method's) was a row of hidden
    /// values.
    #[test]
    fn a_mistyped_key_a_number_and_full_width_letters_are_said() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Train {
            epochs: Option<u64>,
            warmup_steps: Option<u64>,
        }
        let err = |text: &str| toml_error(text, &toml::from_str::<Train>(text).unwrap_err());
        let shown = err("epocs = 3\n");
        assert!(shown.ends_with(" (did you mean `epochs`?)") && !shown.contains("lowercase"), "{shown}");
        let shown = err("warmup_steps = -20\n");
        assert!(shown.contains("-20"), "{shown}");
        let shown = err("ｅｐｏｃｈｓ = 2\n");
        assert!(shown.contains("full-width characters"), "{shown}");
        // a number of many digits is a value not printed (an id, a phone number)
        let shown = err("warmup_steps = \"09012345678\"\n");
        assert!(!shown.contains("09012345678"), "{shown}");
    }

    #[test]
    fn closed_sets_return_their_own_spelling_and_nothing_else() {
        assert_eq!(resource_type("Observation"), Some("Observation"));
        assert_eq!(resource_type("observation"), None);
        assert_eq!(resource_type("090-1234-5678"), None);
        assert_eq!(FHIR_R4_RESOURCE_TYPES.len(), 146);
        assert_eq!(encounter_class("EMER"), Some("EMER"));
        assert_eq!(encounter_class("taro@example.jp"), None);
        assert_eq!(code_system("http://loinc.org"), Some("http://loinc.org"));
        assert_eq!(code_system("http://example.org/taro"), None);
    }

    #[test]
    fn quoted_fragments_of_messages_are_kept_only_when_they_are_plain_names() {
        assert_eq!(
            redact_quoted("unknown variant `090-1234-5678`, expected `reject` or `redact`"),
            "unknown variant (a value that is not printed), expected `reject` or `redact`"
        );
        assert_eq!(
            redact_quoted(r#"invalid type: string "Hanako Suzuki", expected f64"#),
            "invalid type: string (a value that is not printed), expected f64"
        );
        assert_eq!(redact_quoted("unknown field `bucket`"), "unknown field `bucket`");
        assert_eq!(
            redact_quoted("unknown field `note_t090-1234-5678okens`"),
            "unknown field (a value that is not printed)"
        );
        assert_eq!(redact_quoted("open \"taro@example.jp"), "open (a value that is not printed)");
        assert_eq!(quoted("creatinine"), "\"creatinine\"");
        assert_eq!(quoted("山田太郎"), "(a value that is not printed)");
    }
}
