//! `filter`: keeps the records a typed boolean expression holds for.

use std::sync::Arc;

use serde::Deserialize;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::expr::{self, Expr};
use crate::records::Record;
use crate::FieldType;
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterToml {
    expr: String,
}

impl FilterToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        let e = expr::parse(&self.expr).map_err(|m| format!("expr {:?}: {m}", self.expr))?;
        if e.check(cx.schema).map_err(|m| format!("expr {:?}: {m}", self.expr))? != FieldType::Bool {
            return Err(format!("expr {:?} is not a bool expression", self.expr).into());
        }
        Ok((Arc::new(Filter { expr: e }), cx.schema.clone()))
    }
}

#[derive(Debug)]
struct Filter {
    expr: Expr,
}

impl Operator for Filter {
    fn name(&self) -> String {
        "filter".into()
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(self))
    }
}

impl OpRun for &Filter {
    fn batch(&mut self, _: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        let (mut kept, mut rejected) = (Vec::new(), Vec::new());
        for r in records {
            match self.expr.eval(&r) {
                Ok(true) => kept.push(r),
                Ok(false) => {}
                Err(e) => rejected.push((r, e.0)),
            }
        }
        Ok((kept, rejected))
    }
}
