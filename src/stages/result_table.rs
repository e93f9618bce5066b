//! The result table of a stage that checks (verify, test): one row per check, each failed or not. The job
//! summary gets every row; stdout gets only the failed ones unless `--verbose` asks for all, so that a large
//! release does not print thousands of rows that passed.

/// A markdown table whose rows are marked failed or not.
pub struct ResultTable {
    header: String,
    rows: Vec<Row>,
}

struct Row {
    failed: bool,
    line: String,
}

/// Which rows of a [`ResultTable`] to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    /// Only the failed rows; nothing at all, not even the header, when none failed.
    Failed,
}

impl Rows {
    /// What a checking stage prints on stdout: every row with `--verbose`, else the failed ones.
    pub fn on_stdout(verbose: bool) -> Self {
        if verbose { Self::All } else { Self::Failed }
    }
}

impl ResultTable {
    pub fn new(columns: &[&str]) -> Self {
        Self {
            header: format!(
                "| {} |\n|{}\n",
                columns.join(" | "),
                "---|".repeat(columns.len())
            ),
            rows: Vec::new(),
        }
    }

    /// Adds a row of `cells`, each made safe inside a markdown table cell.
    pub fn push(&mut self, failed: bool, cells: &[&str]) {
        let cells: Vec<String> = cells.iter().map(|text| cell(text)).collect();
        self.rows.push(Row {
            failed,
            line: format!("| {} |\n", cells.join(" | ")),
        });
    }

    /// The header and the rows selected by `rows`; an empty string when [`Rows::Failed`] selects none.
    pub fn markdown(&self, rows: Rows) -> String {
        let selected: Vec<&str> = self
            .rows
            .iter()
            .filter(|row| rows == Rows::All || row.failed)
            .map(|row| row.line.as_str())
            .collect();
        if rows == Rows::Failed && selected.is_empty() {
            return String::new();
        }
        let mut table = self.header.clone();
        table.extend(selected);
        table
    }
}

/// Text safe inside a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_or_only_the_failed_ones() {
        let mut table = ResultTable::new(&["check", "result"]);
        table.push(false, &["one", "passed"]);
        table.push(true, &["two | three", "failed:\nwhy"]);
        let header = "| check | result |\n|---|---|\n";
        let failed = "| two \\| three | failed: why |\n";
        assert_eq!(
            table.markdown(Rows::All),
            format!("{header}| one | passed |\n{failed}")
        );
        assert_eq!(table.markdown(Rows::Failed), format!("{header}{failed}"));

        let mut passing = ResultTable::new(&["check", "result"]);
        passing.push(false, &["one", "passed"]);
        assert_eq!(passing.markdown(Rows::Failed), "");
        assert_eq!(
            ResultTable::new(&["check"]).markdown(Rows::All),
            "| check |\n|---|\n"
        );
    }

    #[test]
    fn stdout_has_every_row_only_when_verbose() {
        assert_eq!(Rows::on_stdout(true), Rows::All);
        assert_eq!(Rows::on_stdout(false), Rows::Failed);
    }
}
