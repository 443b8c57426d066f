//! The gallery of record, shared by the instances on one database: every enrolled person's
//! templates (by model), and when each removed person was removed, so that an instance whose
//! own gallery folder still holds their photos does not bring them back.

use std::collections::HashMap;

use super::db::{OptionalRow, params};
use super::{Embedding, Store, StoreError, decode_vector, encode_vector};

/// One template as instances share it: the person, the photo's file name in their folder,
/// and its embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedTemplate {
    pub person: String,
    pub file: String,
    pub embedding: Embedding,
}

impl Store {
    /// Every shared template of the model `cache_key`.
    pub fn shared_templates(&self, cache_key: &str) -> Result<Vec<SharedTemplate>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT person, file, vector FROM gallery_templates WHERE cache_key = ?1
                 ORDER BY person, file",
                params![cache_key],
                |row| {
                    Ok(SharedTemplate {
                        person: row.get(0)?,
                        file: row.get(1)?,
                        embedding: decode_vector(&row.get::<Vec<u8>>(2)?),
                    })
                },
            )
        })
    }

    /// One shared template, if it is there.
    pub fn shared_template(
        &self,
        cache_key: &str,
        person: &str,
        file: &str,
    ) -> Result<Option<SharedTemplate>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT vector FROM gallery_templates
                 WHERE cache_key = ?1 AND person = ?2 AND file = ?3",
                params![cache_key, person, file],
                |row| {
                    Ok(SharedTemplate {
                        person: person.to_string(),
                        file: file.to_string(),
                        embedding: decode_vector(&row.get::<Vec<u8>>(0)?),
                    })
                },
            )
            .optional()
        })
    }

    /// Shares templates (one transaction); one already shared is left as it is. Answers how
    /// many were new.
    pub fn share_templates(
        &self,
        cache_key: &str,
        templates: &[SharedTemplate],
    ) -> Result<usize, StoreError> {
        self.with_transaction(|c| {
            let mut added = 0;
            for template in templates {
                added += c.execute(
                    "INSERT INTO gallery_templates (cache_key, person, file, vector)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![
                        cache_key,
                        template.person,
                        template.file,
                        encode_vector(&template.embedding)
                    ],
                )?;
            }
            Ok(added)
        })
    }

    /// Removes a person from the shared gallery at `at` (Unix seconds); answers how many
    /// templates they had there.
    pub fn unshare_person(&self, person: &str, at: i64) -> Result<usize, StoreError> {
        self.with_transaction(|c| {
            let templates = c.execute(
                "DELETE FROM gallery_templates WHERE person = ?1",
                params![person],
            )?;
            c.execute(
                "INSERT INTO gallery_removals (person, at) VALUES (?1, ?2)
                 ON CONFLICT (person) DO UPDATE SET at = excluded.at",
                params![person, at],
            )?;
            Ok(templates)
        })
    }

    /// When each removed person was last removed (Unix seconds).
    pub fn gallery_removals(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT person, at FROM gallery_removals",
                params![],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(person: &str, file: &str, x: f32) -> SharedTemplate {
        SharedTemplate {
            person: person.into(),
            file: file.into(),
            embedding: vec![x, 1.0 - x],
        }
    }

    #[test]
    fn templates_are_shared_once_by_model_and_a_removal_is_remembered() {
        for store in crate::store::test_stores() {
            let first = [
                template("ann", "a.jpg", 0.25),
                template("bob", "b.jpg", 0.5),
            ];
            assert_eq!(store.share_templates("m1", &first).expect("db"), 2);
            assert_eq!(store.share_templates("m1", &first[..1]).expect("db"), 0);
            assert_eq!(store.shared_templates("m1").expect("db"), first);
            assert!(store.shared_templates("m2").expect("db").is_empty());
            assert_eq!(
                store.shared_template("m1", "bob", "b.jpg").expect("db"),
                Some(first[1].clone())
            );
            assert_eq!(store.unshare_person("ann", 1000).expect("db"), 1);
            assert_eq!(store.shared_templates("m1").expect("db"), first[1..]);
            assert_eq!(store.gallery_removals().expect("db")["ann"], 1000);
            assert_eq!(store.unshare_person("ann", 2000).expect("db"), 0);
            assert_eq!(store.gallery_removals().expect("db")["ann"], 2000);
        }
    }
}
