//! A small structural checker of JSON bodies against the OpenAPI document itself: it
//! follows `$ref`s into `components.schemas`, and for an object schema that lists
//! `properties` it requires the `required` ones and refuses any property not listed. It
//! refuses schema keywords it does not know instead of skipping them, so the document
//! cannot grow a constraint these tests silently ignore. `conforms` checks a whole reply
//! (status, media type, body) against the operation that answered it.

use serde_json::Value;

use crate::Reply;

/// Keywords that only describe and never constrain.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "externalDocs",
];

/// Resolve a local `$ref` such as `#/components/schemas/LogPage`.
pub fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_fits(declared: &str, value: &Value) -> bool {
    let kind = kind_of(value);
    declared == kind || (declared == "number" && kind == "integer")
}

/// Check `value` against `schema`, resolving references in `doc`; what does not fit is
/// added to `errors`, each with the JSON pointer of the offending part.
pub fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if schema.as_bool() == Some(true) {
        return;
    }
    let Some(schema) = schema.as_object() else {
        errors.push(format!("{at}: the schema {schema} is not an object"));
        return;
    };
    for (keyword, argument) in schema {
        match keyword.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$ref" => match argument.as_str().and_then(|r| resolve(doc, r)) {
                Some(target) => check(doc, target, value, at, errors),
                None => errors.push(format!("{at}: unresolvable $ref {argument}")),
            },
            "type" => {
                let fits = match argument {
                    Value::String(t) => type_fits(t, value),
                    Value::Array(ts) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|t| type_fits(t, value)),
                    _ => false,
                };
                if !fits {
                    errors.push(format!("{at}: {value} is not of type {argument}"));
                }
            }
            "format" => check_format(argument.as_str().unwrap_or(""), value, at, errors),
            "minimum" => {
                if let (Some(min), Some(v)) = (argument.as_f64(), value.as_f64()) {
                    if v < min {
                        errors.push(format!("{at}: {v} is below the minimum {min}"));
                    }
                }
            }
            "maximum" => {
                if let (Some(max), Some(v)) = (argument.as_f64(), value.as_f64()) {
                    if v > max {
                        errors.push(format!("{at}: {v} is above the maximum {max}"));
                    }
                }
            }
            "enum" => {
                if !argument.as_array().is_some_and(|list| list.contains(value)) {
                    errors.push(format!("{at}: {value} is not one of {argument}"));
                }
            }
            "const" => {
                if argument != value {
                    errors.push(format!("{at}: {value} is not {argument}"));
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        check(doc, argument, item, &format!("{at}/{i}"), errors);
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in argument.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        if !object.contains_key(name) {
                            errors.push(format!("{at}: the required property {name:?} is missing"));
                        }
                    }
                }
            }
            "properties" => {
                let Some(object) = value.as_object() else {
                    continue;
                };
                let declared = argument.as_object().cloned().unwrap_or_default();
                for (name, property) in object {
                    let here = format!("{at}/{name}");
                    match declared.get(name) {
                        Some(s) => check(doc, s, property, &here, errors),
                        None => match schema.get("additionalProperties") {
                            Some(Value::Bool(true)) => {}
                            Some(extra @ Value::Object(_)) => {
                                check(doc, extra, property, &here, errors)
                            }
                            // Declared properties are the whole list unless the schema
                            // says otherwise.
                            _ => errors.push(format!(
                                "{here}: the property {name:?} is not declared by the schema"
                            )),
                        },
                    }
                }
            }
            "additionalProperties" => {
                // With `properties`, handled there; alone, it constrains every property.
                if schema.contains_key("properties") {
                    continue;
                }
                if let Some(object) = value.as_object() {
                    for (name, property) in object {
                        let here = format!("{at}/{name}");
                        match argument {
                            Value::Bool(true) => {}
                            Value::Object(_) => check(doc, argument, property, &here, errors),
                            _ => errors.push(format!(
                                "{here}: the property {name:?} is not declared by the schema"
                            )),
                        }
                    }
                }
            }
            "oneOf" | "anyOf" => {
                let passing = argument
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|branch| {
                        let mut branch_errors = Vec::new();
                        check(doc, branch, value, at, &mut branch_errors);
                        branch_errors.is_empty()
                    })
                    .count();
                let ok = if keyword == "oneOf" {
                    passing == 1
                } else {
                    passing >= 1
                };
                if !ok {
                    errors.push(format!(
                        "{at}: {value} fits {passing} branches of {keyword} {argument}"
                    ));
                }
            }
            "allOf" => {
                for branch in argument.as_array().into_iter().flatten() {
                    check(doc, branch, value, at, errors);
                }
            }
            other => errors.push(format!(
                "{at}: the checker does not know the schema keyword {other:?}; teach it before relying on it"
            )),
        }
    }
}

fn check_format(format: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
    let fits = match (format, value) {
        (_, Value::Null) => true,
        ("uuid", Value::String(s)) => uuid::Uuid::parse_str(s).is_ok(),
        ("date-time", Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        ("int64", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("int32", Value::Number(n)) => n
            .as_i64()
            .is_some_and(|v| i32::try_from(v).is_ok() || u32::try_from(v).is_ok()),
        ("uuid" | "date-time", _) | ("int64" | "int32", _) => false,
        (other, _) => {
            errors.push(format!(
                "{at}: the checker does not know the format {other:?}"
            ));
            return;
        }
    };
    if !fits {
        errors.push(format!("{at}: {value} is not a {format}"));
    }
}

pub fn errors_of(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(doc, schema, value, "", &mut errors);
    errors
}

/// Check that `reply` is an answer the document declares for `method path`: its status,
/// its media type, and — for JSON — its body against the declared schema.
pub fn conforms(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let what = format!("{method} {path} → {}", reply.status);
    let operation = &doc["paths"][path][method.to_lowercase()];
    assert!(operation.is_object(), "{what}: not in the document");
    let status = reply.status.as_u16().to_string();
    let response = match operation["responses"].get(&status) {
        Some(r) => r,
        None => operation["responses"]
            .get("default")
            .unwrap_or_else(|| panic!("{what}: status not declared; body {}", reply.json())),
    };
    let media = reply.media_type();
    let content = response["content"].get(&media).unwrap_or_else(|| {
        panic!(
            "{what}: media type {media:?} not declared (declared: {})",
            response["content"]
        )
    });
    if !(media == "application/json" || media.ends_with("+json")) {
        assert!(
            std::str::from_utf8(&reply.bytes).is_ok(),
            "{what}: not text"
        );
        return;
    }
    let body: Value = serde_json::from_slice(&reply.bytes)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON: {e}"));
    let schema = content
        .get("schema")
        .unwrap_or_else(|| panic!("{what}: a JSON response without a schema"));
    let errors = errors_of(doc, schema, &body);
    assert!(
        errors.is_empty(),
        "{what}: the body does not fit its schema:\n  {}\nbody: {body}",
        errors.join("\n  ")
    );
}
