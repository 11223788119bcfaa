//! `embed(text [, model])`: the SQL scalar function that turns text into vectors with a
//! configured embedding model.
//!
//! Returns `FixedSizeList<Float32, D>` where `D` is the model's configured dimension, known at
//! planning (and checked against every answer of the model). `model` must be a string literal
//! naming a configured model; without it the default model is used. NULL text gives a NULL
//! vector. It runs as a DataFusion async UDF: the texts of each batch are sent through the
//! [`crate::embedding::Embedder`] (batched, cached, retried within its timeout). The result
//! field carries the model's name in its metadata under [`MODEL_METADATA_KEY`].

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use crate::args::{self, model_arg, model_name, plan_err, to_datafusion};
use crate::embedding::{Embedder, EmbeddingModels};

/// Field metadata key on `embed`'s result naming the model that made the vectors, so a table
/// created from them (`CREATE TABLE ... STORED AS LANCE AS SELECT embed(body) ...`) records
/// its vector column's model.
pub const MODEL_METADATA_KEY: &str = "lakehouse.embedding.model";

/// The `embed` function over `models`.
#[derive(Debug)]
pub struct EmbedFunction {
    models: Arc<EmbeddingModels>,
    signature: Signature,
}

impl EmbedFunction {
    /// `embed` as a DataFusion scalar UDF (async).
    pub fn udf(models: Arc<EmbeddingModels>) -> ScalarUDF {
        let function = Self {
            models,
            // Volatile: never evaluated at planning (that would call the model while planning).
            signature: Signature::one_of(
                vec![TypeSignature::String(1), TypeSignature::String(2)],
                Volatility::Volatile,
            ),
        };
        AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
    }

    fn embedder(&self, model: Option<&str>) -> datafusion::error::Result<&Arc<Embedder>> {
        self.models
            .get(model)
            .map_err(|e| args::plan_err("embed", e))
    }
}

impl PartialEq for EmbedFunction {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.models, &other.models)
    }
}

impl Eq for EmbedFunction {}

impl Hash for EmbedFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "embed".hash(state);
    }
}

/// `values` (row-major, `dimension` per row) as a [`vector_type`] column with `nulls`.
///
/// # Errors
/// Arrow's, when `values` is not a multiple of `dimension` long or `nulls` has another length.
pub(crate) fn vector_array(
    values: Vec<f32>,
    dimension: usize,
    nulls: Option<NullBuffer>,
) -> Result<FixedSizeListArray, arrow::error::ArrowError> {
    FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        i32::try_from(dimension).unwrap_or(i32::MAX),
        Arc::new(Float32Array::from(values)),
        nulls,
    )
}

/// `FixedSizeList<Float32, dimension>` with nullable items, the type of every vector column made here.
pub(crate) fn vector_type(dimension: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        i32::try_from(dimension).unwrap_or(i32::MAX),
    )
}

impl ScalarUDFImpl for EmbedFunction {
    fn name(&self) -> &str {
        "embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(vector_type(self.embedder(None)?.dimension()))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> datafusion::error::Result<FieldRef> {
        let model = match args.arg_fields.len() {
            1 => None,
            _ => Some(
                args.scalar_arguments
                    .get(1)
                    .copied()
                    .flatten()
                    .ok_or_else(|| plan_err("embed", "the model must be a string literal"))?,
            ),
        };
        let model = model_name("embed", model)?;
        let embedder = self.embedder(model)?;
        Ok(Arc::new(
            Field::new("embed", vector_type(embedder.dimension()), true).with_metadata(
                [(MODEL_METADATA_KEY.to_string(), embedder.name().to_string())].into(),
            ),
        ))
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Err(DataFusionError::Internal(
            "embed runs as an async function".into(),
        ))
    }
}

#[async_trait::async_trait]
impl AsyncScalarUDFImpl for EmbedFunction {
    async fn invoke_async_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let embedder = self.embedder(model_arg("embed", args.args.get(1))?)?;
        let texts: ArrayRef = args.args[0].to_array(args.number_rows)?;
        let texts = arrow::compute::cast(&texts, &DataType::Utf8)?;
        let texts = texts
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let present: Vec<String> = texts.iter().flatten().map(String::from).collect();
        let vectors = embedder.embed(&present).await.map_err(to_datafusion)?;
        let dimension = embedder.dimension();
        let mut values = Vec::with_capacity(texts.len() * dimension);
        let mut next = vectors.iter();
        for i in 0..texts.len() {
            if texts.is_null(i) {
                values.extend(std::iter::repeat_n(0.0, dimension));
            } else {
                values.extend_from_slice(next.next().expect("one vector per text"));
            }
        }
        let nulls = texts
            .nulls()
            .cloned()
            .map(|n| NullBuffer::new(n.inner().clone()));
        let array = vector_array(values, dimension, nulls)?;
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}
