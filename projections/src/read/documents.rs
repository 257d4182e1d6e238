//! `view_documents`, joined with `view_persons` for the unit of a document never deposited
//! (it belongs to its holder's unit).

use custody_domain::document::DocumentState;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{bind_texts, state, Page, Reader, Scope};
use crate::personal;
use crate::{Projection, ProjectionError};

/// A document as the view has it; personal data unmasked.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRow {
    /// ZJBS.
    pub id: String,
    /// The document type's code (ZJLX).
    pub document_type: Option<String>,
    /// The document number (ZJHM).
    pub number: Option<String>,
    pub state: DocumentState,
    pub holder: HolderRow,
    /// The unit holding the document, else (never deposited) its holder's unit.
    pub unit: Option<String>,
    /// The drawer it is in, if it is in a cabinet.
    pub location: Option<DrawerLocation>,
    /// ISO date.
    pub planned_return: Option<String>,
    pub version: i64,
    pub updated_at: String,
}

/// The holder as the document record names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderRow {
    /// RYBS.
    pub id: Option<String>,
    /// Chinese name (XM).
    pub name: Option<String>,
    /// Citizen ID number (GMSFHM).
    pub citizen_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawerLocation {
    /// The cabinet (SBXLH).
    pub device: String,
    /// The cabinet body (ZJGXLH).
    pub body: Option<String>,
    pub row: Option<i64>,
    pub column: Option<i64>,
}

/// What a list of documents is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentFilter {
    pub unit: Option<String>,
    /// A state's name.
    pub state: Option<String>,
    /// The document number (ZJHM), looked up by its blind index.
    pub number: Option<String>,
    /// The holder's citizen ID number (GMSFHM), looked up by its blind index.
    pub holder_citizen_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocumentPage {
    pub documents: Vec<DocumentRow>,
    /// All documents the filter and the scope let through, on every page.
    pub total: i64,
}

const COLUMNS: &str = "d.zjbs, d.zjlx, d.zjhm, d.state, d.holder_rybs, d.holder_xm, \
    d.holder_gmsfhm, COALESCE(d.unit, p.unit) AS owner, d.sbxlh, d.zjgxlh, d.drawer_row, \
    d.drawer_col, d.planned_return, d.version, d.updated_at";

/// The unit a document belongs to, as SQL over `FROM_JOINED`.
pub(super) const OWNER: &str = "COALESCE(d.unit, p.unit)";

/// Documents `d` joined with their holder `p`, of the given generations.
pub(super) fn joined(documents: i64, persons: i64) -> String {
    format!(
        "FROM view_documents d LEFT JOIN view_persons p ON p.generation = {persons} \
         AND p.rybs = d.holder_rybs WHERE d.generation = {documents}"
    )
}

fn document(row: &AnyRow) -> Result<DocumentRow, ProjectionError> {
    let device: Option<String> = row.try_get("sbxlh")?;
    Ok(DocumentRow {
        id: row.try_get("zjbs")?,
        document_type: row.try_get("zjlx")?,
        number: row.try_get("zjhm")?,
        state: state(row, "state")?,
        holder: HolderRow {
            id: row.try_get("holder_rybs")?,
            name: row.try_get("holder_xm")?,
            citizen_id: row.try_get("holder_gmsfhm")?,
        },
        unit: row.try_get("owner")?,
        location: match device {
            Some(device) => Some(DrawerLocation {
                device,
                body: row.try_get("zjgxlh")?,
                row: row.try_get("drawer_row")?,
                column: row.try_get("drawer_col")?,
            }),
            None => None,
        },
        planned_return: row.try_get("planned_return")?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Reader {
    /// The generations of the documents view and of the persons view it joins.
    pub(super) async fn document_generations(&self) -> Result<(i64, i64), ProjectionError> {
        Ok((
            self.generation(Projection::Documents).await?,
            self.generation(Projection::Persons).await?,
        ))
    }

    /// A document, if it exists and `scope` sees it.
    pub async fn document(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<DocumentRow>, ProjectionError> {
        let (documents, persons) = self.document_generations().await?;
        let sql = format!(
            "SELECT {COLUMNS} {} AND d.zjbs = $1",
            joined(documents, persons)
        );
        let found = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|row| document(&row))
            .transpose()?;
        let mut found: Vec<DocumentRow> = found
            .filter(|d| scope.sees(d.unit.as_deref()))
            .into_iter()
            .collect();
        self.open_documents(&mut found).await?;
        Ok(found.pop())
    }

    /// A page of the documents `scope` sees, narrowed by `filter`, in ZJBS order.
    pub async fn documents(
        &self,
        scope: &Scope,
        filter: &DocumentFilter,
        page: Page,
    ) -> Result<DocumentPage, ProjectionError> {
        let (documents, persons) = self.document_generations().await?;
        let (in_scope, units) = scope.filter(OWNER, 3);
        let by_index = self
            .blind_index_condition(&[
                ("d.zjhm_index", "zjhm", filter.number.as_deref()),
                (
                    "d.holder_gmsfhm_index",
                    "gmsfhm",
                    filter.holder_citizen_id.as_deref(),
                ),
            ])
            .await?;
        let from = format!(
            "{} AND ($1 = '' OR {OWNER} = $1) AND ($2 = '' OR d.state = $2){in_scope}{by_index}",
            joined(documents, persons)
        );
        let parameters = || {
            [
                filter.unit.clone().unwrap_or_default(),
                filter.state.clone().unwrap_or_default(),
            ]
            .into_iter()
            .chain(units.iter().cloned())
        };
        let count = format!("SELECT COUNT(*) AS n {from}");
        let total: i64 = bind_texts(sqlx::query(&count), parameters())
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let rows = format!(
            "SELECT {COLUMNS} {from} ORDER BY d.zjbs LIMIT {} OFFSET {}",
            page.size,
            page.offset()
        );
        let mut documents: Vec<DocumentRow> = bind_texts(sqlx::query(&rows), parameters())
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(document)
            .collect::<Result<_, _>>()?;
        self.open_documents(&mut documents).await?;
        Ok(DocumentPage { documents, total })
    }

    /// Opens the sealed personal cells of documents read from the view.
    pub(super) async fn open_documents(
        &self,
        rows: &mut [DocumentRow],
    ) -> Result<(), ProjectionError> {
        let ring = personal::ring_for_cells(
            &self.log,
            rows.iter().map(|r| {
                let sealed = [&r.number, &r.holder.name, &r.holder.citizen_id]
                    .iter()
                    .any(|c| personal::is_sealed(c.as_deref()));
                (r.holder.id.clone(), sealed)
            }),
        )
        .await?;
        let Some(ring) = ring else {
            return Ok(());
        };
        for r in rows {
            let holder = r.holder.id.as_deref();
            let table = personal::DOCUMENTS.table;
            personal::open_cell(Some(&ring), table, &r.id, "zjhm", holder, &mut r.number)?;
            personal::open_cell(
                Some(&ring),
                table,
                &r.id,
                "holder_xm",
                holder,
                &mut r.holder.name,
            )?;
            personal::open_cell(
                Some(&ring),
                table,
                &r.id,
                "holder_gmsfhm",
                holder,
                &mut r.holder.citizen_id,
            )?;
        }
        Ok(())
    }
}
