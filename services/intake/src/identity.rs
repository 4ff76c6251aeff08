//! Finding a person by any shared identifier (system + value).

use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Identifier;

/// The `person_ref` of the person holding any of `identifiers`, or a new one. Every
/// identifier is then indexed to it. When two requests for a new person race, the
/// first insert wins and both read back the same `person_ref`.
pub async fn resolve(pool: &PgPool, identifiers: &[Identifier]) -> sqlx::Result<Uuid> {
    let systems: Vec<&str> = identifiers.iter().map(|i| i.system.as_str()).collect();
    let values: Vec<&str> = identifiers.iter().map(|i| i.value.as_str()).collect();
    let mut tx = pool.begin().await?;
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT person_ref FROM intake.person_identifiers
         WHERE (system, value) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY person_ref LIMIT 1",
    )
    .bind(&systems)
    .bind(&values)
    .fetch_optional(&mut *tx)
    .await?;
    let candidate = found.unwrap_or_else(Uuid::new_v4);
    sqlx::query(
        "INSERT INTO intake.person_identifiers (system, value, person_ref)
         SELECT s, v, $3 FROM unnest($1::text[], $2::text[]) AS t(s, v)
         ON CONFLICT DO NOTHING",
    )
    .bind(&systems)
    .bind(&values)
    .bind(candidate)
    .execute(&mut *tx)
    .await?;
    let person_ref: Uuid = sqlx::query_scalar(
        "SELECT person_ref FROM intake.person_identifiers WHERE system = $1 AND value = $2",
    )
    .bind(systems[0])
    .bind(values[0])
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(person_ref)
}
