//! How input JSON maps onto depman's types where serde's defaults say more
//! than the OpenAPI document: integers as JSON Schema counts them (`3.0` is
//! the integer 3, `3.5` is no integer), and structs from objects only
//! (serde's derive also takes an array of the field values).

use std::marker::PhantomData;

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, Error, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer},
};

struct Integer;

impl Visitor<'_> for Integer {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::custom(format!("{value} is too large")))
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<i64, E> {
        if value.fract() == 0.0 && value.abs() < 2f64.powi(53) {
            Ok(value as i64)
        } else {
            Err(E::custom(format!("must be an integer, not {value}")))
        }
    }
}

pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(Integer)
}

pub fn optional_integer<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "integer")] i64);
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(value)| value))
}

/// Deserializes a `T` from a JSON object, and from nothing else.
struct ObjectOnly<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ObjectOnly<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_map(self)
    }
}

pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    ObjectOnly(PhantomData).deserialize(deserializer)
}

pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    struct Wrapped<T>(T);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Wrapped<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            object(deserializer).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped<T>>::deserialize(deserializer)?.map(|Wrapped(value)| value))
}

/// An optional array of objects.
pub fn optional_objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Vec<T>>, D::Error> {
    struct Objects<T>(Vec<T>);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Objects<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_seq(ObjectsVisitor(PhantomData))
        }
    }
    struct ObjectsVisitor<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectsVisitor<T> {
        type Value = Objects<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Objects<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(ObjectOnly(PhantomData))? {
                items.push(item);
            }
            Ok(Objects(items))
        }
    }
    Ok(Option::<Objects<T>>::deserialize(deserializer)?.map(|Objects(items)| items))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Point {
        x: i64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Shape {
        #[serde(default, deserialize_with = "optional_integer")]
        size: Option<i64>,
        #[serde(default, deserialize_with = "optional_objects")]
        points: Option<Vec<Point>>,
        #[serde(default, deserialize_with = "optional_object")]
        origin: Option<Point>,
    }

    fn shape(value: serde_json::Value) -> Result<Shape, String> {
        serde_path_to_error::deserialize(value).map_err(|e| e.path().to_string())
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(shape(json!({"size": 3.0})).map(|s| s.size), Ok(Some(3)));
        assert_eq!(shape(json!({"size": null})).map(|s| s.size), Ok(None));
        for bad in [json!(3.5), json!("3"), json!(1e300), json!(u64::MAX)] {
            assert_eq!(
                shape(json!({"size": bad})).map(|s| s.size),
                Err("size".into())
            );
        }
    }

    /// Parsed from the request's text, as the API does: a large integral
    /// float must come out exact, or it is no integer (make fuzz sent
    /// `1874628231283049.0`, which serde_json's fast float parsing read as
    /// `1874628231283048.8`).
    #[test]
    fn large_integral_floats_are_read_exactly() {
        let size = |text: &str| {
            serde_json::from_str::<Shape>(&format!(r#"{{"size": {text}}}"#)).map(|s| s.size)
        };
        assert_eq!(
            size("1874628231283049.0").ok(),
            Some(Some(1_874_628_231_283_049))
        );
        assert_eq!(
            size("9007199254740991.0").ok(),
            Some(Some(9_007_199_254_740_991))
        );
        assert!(size("1874628231283049.5").is_err());
    }

    #[test]
    fn structs_come_from_objects_only() {
        let good = shape(json!({"points": [{"x": 1}], "origin": {"x": 0}})).expect("valid");
        assert_eq!(good.points, Some(vec![Point { x: 1 }]));
        assert_eq!(good.origin, Some(Point { x: 0 }));
        assert_eq!(
            shape(json!({"points": [[1]]})).err(),
            Some("points[0]".into())
        );
        assert_eq!(shape(json!({"origin": [0]})).err(), Some("origin".into()));
        // Paths inside an object still name the field.
        assert_eq!(
            shape(json!({"points": [{"x": 1}, {"x": "a"}]})).err(),
            Some("points[1].x".into())
        );
    }
}
