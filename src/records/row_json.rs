//! Rows as jsonb, written straight into jsonb's binary format.
//!
//! The row audit stores every changed row as a jsonb object. `to_jsonb(record)` builds a
//! tree of JsonbValues, sorts the keys and then serialises the tree; for the column types
//! seen in most tables this module writes the same bytes directly from the tuple's values,
//! with the keys sorted once per table. Columns of other types (arrays, composites,
//! floats, json, user-defined types) are converted by to_jsonb itself, one column at a
//! time, and the result is spliced in. `row_json_matches_to_jsonb` (tests) compares the
//! bytes with to_jsonb's for every kind.
//!
//! The format (PostgreSQL's `jsonb.h`): a varlena header; a container header (count |
//! JB_FOBJECT); one JEntry per key, then one per value; then the keys' bytes and the
//! values' bytes in the same order. A JEntry holds the type and the length of its data,
//! except every JB_OFFSET_STRIDE-th one, which holds the end offset instead. Numerics and
//! nested containers are aligned to 4 bytes, the padding counting as part of their data.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// How one column's value becomes a jsonb value.
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    /// text, varchar, bpchar: the characters as they are stored.
    Text,
    Name,
    Jsonb,
    /// date, timestamp, timestamptz: ISO 8601, as to_jsonb writes them.
    DateTime(pg_sys::Oid),
    /// Types to_jsonb writes as the string their output function returns.
    Output(*mut pg_sys::FmgrInfo),
    /// json: to_jsonb(value), except for json that jsonb cannot hold (`\u0000`, lone
    /// surrogates), which PostgreSQL accepts in json: kept as a jsonb string of its text,
    /// so that the audit never fails a write PostgreSQL accepts.
    Json(*mut pg_sys::FmgrInfo),
    /// Types whose JSON form would not come back exactly: arrays and composites holding
    /// json (to_jsonb would parse it, and fail on json that jsonb cannot hold), values
    /// naming objects (regclass, regtype, ..., and anything holding them: the names are
    /// written qualified unless in pg_catalog, so that a restore finds them whatever its
    /// search_path), int2vector and oidvector (0-based). Kept as the string of their output
    /// function, which a restore feeds back to their input function.
    TextForm(*mut pg_sys::FmgrInfo),
    /// Arrays: to_jsonb(value), except an array whose lower bounds are not all 1 (which a
    /// JSON array cannot say): the string of its output function.
    Array {
        to_jsonb: *mut pg_sys::FmgrInfo,
        output: *mut pg_sys::FmgrInfo,
    },
    /// float4, float8: to_jsonb(value), except -0, which a JSON number cannot keep: the
    /// string "-0" (as to_jsonb writes NaN and the infinities).
    Float(pg_sys::Oid, *mut pg_sys::FmgrInfo),
    /// Everything else: to_jsonb(value) for the column's type.
    ToJsonb(*mut pg_sys::FmgrInfo),
}

struct Column {
    /// Index into the deformed tuple (attnum - 1).
    index: usize,
    name: Vec<u8>,
    kind: Kind,
}

/// The encoder of one table's rows (or of the key columns of its rows), kept per table.
pub struct RowJson {
    /// In jsonb key order: shorter names first, then bytewise.
    columns: Vec<Column>,
    /// Holds the FmgrInfos; deleted with the encoder.
    context: pg_sys::MemoryContext,
}

impl Drop for RowJson {
    fn drop(&mut self) {
        // SAFETY: the context was created by `new` and nothing else refers to it.
        unsafe { pg_sys::MemoryContextDelete(self.context) }
    }
}

impl RowJson {
    /// An encoder for the columns `attnums` of a table (all live columns when `None`).
    ///
    /// # Safety
    /// `tupdesc` must be a valid tuple descriptor.
    pub unsafe fn new(tupdesc: pg_sys::TupleDesc, attnums: Option<&[i32]>) -> RowJson {
        // SAFETY: a child of TopMemoryContext, deleted in Drop; the descriptor is valid
        // (caller); catalog lookups run in a transaction (the trigger's).
        unsafe {
            let context = pg_sys::AllocSetContextCreateInternal(
                pg_sys::TopMemoryContext,
                c"prodguard row json".as_ptr(),
                pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
            );
            let mut columns = Vec::new();
            for i in 0..(*tupdesc).natts as usize {
                let att = &*(*tupdesc).attrs.as_ptr().add(i);
                if att.attisdropped || attnums.is_some_and(|a| !a.contains(&(i as i32 + 1))) {
                    continue;
                }
                columns.push(Column {
                    index: i,
                    name: CStr::from_ptr(att.attname.data.as_ptr())
                        .to_bytes()
                        .to_vec(),
                    kind: kind_of(att.atttypid, context),
                });
            }
            columns.sort_by(|a, b| {
                a.name
                    .len()
                    .cmp(&b.name.len())
                    .then_with(|| a.name.cmp(&b.name))
            });
            RowJson { columns, context }
        }
    }

    /// The jsonb object of one row, palloc'd in the current memory context.
    ///
    /// # Safety
    /// `values`/`nulls` must be a tuple deformed with the descriptor given to `new`.
    pub unsafe fn encode(&self, values: &[pg_sys::Datum], nulls: &[bool]) -> pg_sys::Datum {
        let _formats = StableFormats::set();
        let n = self.columns.len();
        let mut out = Writer::with_capacity(16 + 8 * n + 32 * n);
        out.bytes(&[0; 4]);
        out.u32(n as u32 | pg_sys::JB_FOBJECT);
        let entries = out.buf.len();
        out.bytes(&vec![0; 8 * n]);
        out.data_start = out.buf.len();
        for (i, c) in self.columns.iter().enumerate() {
            let start = out.buf.len();
            out.bytes(&c.name);
            out.entry(entries, i, pg_sys::JENTRY_ISSTRING, start);
        }
        for (j, c) in self.columns.iter().enumerate() {
            let start = out.buf.len();
            let kind = if nulls[c.index] {
                pg_sys::JENTRY_ISNULL
            } else {
                // SAFETY: the value is a non-null datum of the column's type (caller).
                unsafe { value(&mut out, &c.kind, values[c.index]) }
            };
            out.entry(entries, n + j, kind, start);
        }
        let total = out.buf.len();
        let header = varlena_header(total);
        out.buf[..4].copy_from_slice(&header);
        // SAFETY: palloc returns `total` writable bytes; the buffer holds exactly that.
        unsafe {
            let p = pg_sys::palloc(total) as *mut u8;
            std::ptr::copy_nonoverlapping(out.buf.as_ptr(), p, total);
            pg_sys::Datum::from(p)
        }
    }
}

/// PostgreSQL writes and reads dates, intervals and floats by session settings (DateStyle,
/// IntervalStyle, extra_float_digits): rows are encoded, and restores read them back,
/// under pg_dump's fixed ones (ISO dates, postgres intervals, floats exact), so that a row
/// comes back the same whatever the settings of the sessions that wrote and restore it.
/// The settings are put back when the value is dropped (also on an ERROR).
pub struct StableFormats {
    date_style: std::ffi::c_int,
    interval_style: std::ffi::c_int,
    float_digits: std::ffi::c_int,
}

impl StableFormats {
    pub fn set() -> StableFormats {
        // SAFETY: plain reads and writes of backend globals, put back in Drop.
        unsafe {
            let saved = StableFormats {
                date_style: pg_sys::DateStyle,
                interval_style: pg_sys::IntervalStyle,
                float_digits: pg_sys::extra_float_digits,
            };
            pg_sys::DateStyle = pg_sys::USE_ISO_DATES as std::ffi::c_int;
            pg_sys::IntervalStyle = pg_sys::INTSTYLE_POSTGRES as std::ffi::c_int;
            pg_sys::extra_float_digits = 1;
            saved
        }
    }
}

impl Drop for StableFormats {
    fn drop(&mut self) {
        // SAFETY: puts back exactly what `set` saved.
        unsafe {
            pg_sys::DateStyle = self.date_style;
            pg_sys::IntervalStyle = self.interval_style;
            pg_sys::extra_float_digits = self.float_digits;
        }
    }
}

/// Deforms a heap tuple into `values`/`nulls` (resized to the descriptor's width).
///
/// # Safety
/// `tuple` must be a tuple of a relation with descriptor `tupdesc`.
pub unsafe fn deform(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    values: &mut Vec<pg_sys::Datum>,
    nulls: &mut Vec<bool>,
) {
    // SAFETY: guaranteed by the caller; both vectors have natts elements.
    unsafe {
        let natts = (*tupdesc).natts as usize;
        values.resize(natts, pg_sys::Datum::from(0));
        nulls.resize(natts, true);
        pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
    }
}

/// Chooses how values of a type are converted; FmgrInfos live in `context`.
///
/// # Safety
/// Must run in a transaction.
unsafe fn kind_of(typid: pg_sys::Oid, context: pg_sys::MemoryContext) -> Kind {
    // SAFETY: catalog lookups in a transaction; the FmgrInfo and its call expression are
    // allocated in `context`, which outlives every use.
    unsafe {
        // to_jsonb looks through domains too
        let base = pg_sys::getBaseType(typid);
        let output_info = |t: pg_sys::Oid| {
            let mut func = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeOutputInfo(t, &mut func, &mut varlena);
            let flinfo =
                pg_sys::MemoryContextAllocZero(context, std::mem::size_of::<pg_sys::FmgrInfo>())
                    as *mut pg_sys::FmgrInfo;
            pg_sys::fmgr_info_cxt(func, flinfo, context);
            flinfo
        };
        let output = |t: pg_sys::Oid| Kind::Output(output_info(t));
        if needs_text_form(base, 0) {
            return Kind::TextForm(output_info(base));
        }
        if pg_sys::get_element_type(base) != pg_sys::InvalidOid {
            return Kind::Array {
                to_jsonb: to_jsonb_for(typid, context),
                output: output_info(base),
            };
        }
        match base {
            pg_sys::BOOLOID => Kind::Bool,
            pg_sys::INT2OID => Kind::Int2,
            pg_sys::INT4OID => Kind::Int4,
            pg_sys::INT8OID => Kind::Int8,
            pg_sys::NUMERICOID => Kind::Numeric,
            pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => Kind::Text,
            pg_sys::NAMEOID => Kind::Name,
            pg_sys::JSONBOID => Kind::Jsonb,
            pg_sys::DATEOID | pg_sys::TIMESTAMPOID | pg_sys::TIMESTAMPTZOID => Kind::DateTime(base),
            pg_sys::UUIDOID
            | pg_sys::BYTEAOID
            | pg_sys::INTERVALOID
            | pg_sys::INETOID
            | pg_sys::CIDROID
            | pg_sys::TIMEOID
            | pg_sys::TIMETZOID => output(base),
            pg_sys::JSONOID => Kind::Json(to_jsonb_for(typid, context)),
            pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => {
                Kind::Float(base, to_jsonb_for(typid, context))
            }
            _ => Kind::ToJsonb(to_jsonb_for(typid, context)),
        }
    }
}

/// A call of to_jsonb(anyelement) prepared for one argument type (to_jsonb reads the type
/// from the call expression).
///
/// # Safety
/// Must run in a transaction; the result lives in `context`.
pub unsafe fn to_jsonb_for(
    typid: pg_sys::Oid,
    context: pg_sys::MemoryContext,
) -> *mut pg_sys::FmgrInfo {
    // SAFETY: allocations in `context`; fmgr_info_cxt fills the FmgrInfo.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(context);
        let flinfo =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()) as *mut pg_sys::FmgrInfo;
        let to_jsonb = pg_sys::Oid::from(pg_sys::F_TO_JSONB);
        pg_sys::fmgr_info_cxt(to_jsonb, flinfo, context);
        let arg = pg_sys::makeNullConst(typid, -1, pg_sys::InvalidOid);
        let args = pg_sys::lappend(std::ptr::null_mut(), arg as *mut std::ffi::c_void);
        (*flinfo).fn_expr = pg_sys::makeFuncExpr(
            to_jsonb,
            pg_sys::JSONBOID,
            args,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        ) as *mut pg_sys::Node;
        pg_sys::MemoryContextSwitchTo(old);
        flinfo
    }
}

/// Appends one non-null value's data; returns its JEntry type.
///
/// # Safety
/// `datum` must be a non-null value of a type `kind` was chosen for.
unsafe fn value(out: &mut Writer, kind: &Kind, datum: pg_sys::Datum) -> u32 {
    // SAFETY: guaranteed by the caller; varlena values are detoasted before reading, and
    // every pointer read stays within the value's length.
    unsafe {
        match kind {
            Kind::Bool => {
                if datum.value() != 0 {
                    pg_sys::JENTRY_ISBOOL_TRUE
                } else {
                    pg_sys::JENTRY_ISBOOL_FALSE
                }
            }
            Kind::Int2 => integer(out, datum.value() as i16 as i64),
            Kind::Int4 => integer(out, datum.value() as i32 as i64),
            Kind::Int8 => integer(out, datum.value() as i64),
            Kind::Numeric => {
                let payload = varlena_bytes(datum);
                // NaN and the infinities: to_jsonb writes them as strings
                let special = payload.len() >= 2
                    && u16::from_ne_bytes([payload[0], payload[1]]) & 0xC000 == 0xC000;
                if special {
                    let text = match u16::from_ne_bytes([payload[0], payload[1]]) & 0xF000 {
                        0xD000 => "Infinity",
                        0xF000 => "-Infinity",
                        _ => "NaN",
                    };
                    out.bytes(text.as_bytes());
                    pg_sys::JENTRY_ISSTRING
                } else {
                    out.pad();
                    out.bytes(&varlena_header(payload.len() + 4));
                    out.bytes(payload);
                    pg_sys::JENTRY_ISNUMERIC
                }
            }
            Kind::Text => {
                out.bytes(varlena_bytes(datum));
                pg_sys::JENTRY_ISSTRING
            }
            Kind::Name => {
                out.bytes(CStr::from_ptr(datum.cast_mut_ptr()).to_bytes());
                pg_sys::JENTRY_ISSTRING
            }
            Kind::Jsonb => splice(out, varlena_bytes(datum)),
            Kind::DateTime(typid) => {
                let s = pg_sys::JsonEncodeDateTime(
                    std::ptr::null_mut(),
                    datum,
                    *typid,
                    std::ptr::null(),
                );
                out.bytes(CStr::from_ptr(s).to_bytes());
                pg_sys::pfree(s.cast());
                pg_sys::JENTRY_ISSTRING
            }
            Kind::Output(flinfo) => {
                let s = pg_sys::OutputFunctionCall(*flinfo, datum);
                out.bytes(CStr::from_ptr(s).to_bytes());
                pg_sys::pfree(s.cast());
                pg_sys::JENTRY_ISSTRING
            }
            Kind::Json(flinfo) => {
                let text = varlena_bytes(datum);
                if json_beyond_jsonb(text) {
                    out.bytes(text);
                    pg_sys::JENTRY_ISSTRING
                } else {
                    let j = pg_sys::FunctionCall1Coll(*flinfo, pg_sys::InvalidOid, datum);
                    splice(out, varlena_bytes(j))
                }
            }
            Kind::TextForm(flinfo) => {
                // names come qualified unless in pg_catalog (pg_dump's way)
                let mut path = pg_sys::OverrideSearchPath {
                    schemas: std::ptr::null_mut(),
                    addCatalog: true,
                    addTemp: false,
                    generation: 0,
                };
                pg_sys::PushOverrideSearchPath(&mut path);
                let s = pg_sys::OutputFunctionCall(*flinfo, datum);
                pg_sys::PopOverrideSearchPath();
                out.bytes(CStr::from_ptr(s).to_bytes());
                pg_sys::pfree(s.cast());
                pg_sys::JENTRY_ISSTRING
            }
            Kind::Array { to_jsonb, output } => {
                if default_bounds(datum) {
                    let j = pg_sys::FunctionCall1Coll(*to_jsonb, pg_sys::InvalidOid, datum);
                    splice(out, varlena_bytes(j))
                } else {
                    let s = pg_sys::OutputFunctionCall(*output, datum);
                    out.bytes(CStr::from_ptr(s).to_bytes());
                    pg_sys::pfree(s.cast());
                    pg_sys::JENTRY_ISSTRING
                }
            }
            Kind::Float(typid, flinfo) => {
                let negative_zero = if *typid == pg_sys::FLOAT4OID {
                    let f = f32::from_bits(datum.value() as u32);
                    f == 0.0 && f.is_sign_negative()
                } else {
                    let f = f64::from_bits(datum.value() as u64);
                    f == 0.0 && f.is_sign_negative()
                };
                if negative_zero {
                    out.bytes(b"-0");
                    pg_sys::JENTRY_ISSTRING
                } else {
                    let j = pg_sys::FunctionCall1Coll(*flinfo, pg_sys::InvalidOid, datum);
                    splice(out, varlena_bytes(j))
                }
            }
            Kind::ToJsonb(flinfo) => {
                let j = pg_sys::FunctionCall1Coll(*flinfo, pg_sys::InvalidOid, datum);
                splice(out, varlena_bytes(j))
            }
        }
    }
}

/// Whether an array's lower bounds are all 1 (or it is empty): what a JSON array says.
///
/// # Safety
/// `datum` must be a non-null array datum.
unsafe fn default_bounds(datum: pg_sys::Datum) -> bool {
    // SAFETY: the detoasted array starts with ArrayType { vl_len_, ndim, dataoffset,
    // elemtype } followed by ndim dimensions and ndim lower bounds (all int32).
    unsafe {
        let a = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *const i32;
        let ndim = (*a.add(1)).max(0) as usize;
        (0..ndim).all(|d| *a.add(4 + ndim + d) == 1)
    }
}

/// Whether values of a type need their text form (see `Kind::TextForm`): a reg* type,
/// int2vector or oidvector, or json (inside an array or a composite; a json column of its
/// own is `Kind::Json`), anywhere inside arrays, composites, ranges and domains.
///
/// # Safety
/// Must run in a transaction.
unsafe fn needs_text_form(typid: pg_sys::Oid, depth: u32) -> bool {
    if depth > 8 {
        return true; // (deeply nested types: the text form is always exact)
    }
    // SAFETY: catalog lookups in a transaction; the row type's descriptor is released.
    unsafe {
        let base = pg_sys::getBaseType(typid);
        match base {
            pg_sys::REGCLASSOID
            | pg_sys::REGTYPEOID
            | pg_sys::REGPROCOID
            | pg_sys::REGPROCEDUREOID
            | pg_sys::REGOPEROID
            | pg_sys::REGOPERATOROID
            | pg_sys::REGNAMESPACEOID
            | pg_sys::REGROLEOID
            | pg_sys::REGCONFIGOID
            | pg_sys::REGDICTIONARYOID
            | pg_sys::REGCOLLATIONOID
            | pg_sys::INT2VECTOROID
            | pg_sys::OIDVECTOROID => return true,
            pg_sys::JSONOID => return depth > 0,
            // (-0 inside an array or composite: a JSON number cannot keep its sign)
            pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => return depth > 0,
            _ => {}
        }
        let element = pg_sys::get_element_type(base);
        if element != pg_sys::InvalidOid {
            return needs_text_form(element, depth + 1);
        }
        if pg_sys::type_is_rowtype(base) && base != pg_sys::RECORDOID {
            let desc = pg_sys::lookup_rowtype_tupdesc(base, -1);
            let natts = (*desc).natts as usize;
            let found = (0..natts).any(|i| {
                let att = &*(*desc).attrs.as_ptr().add(i);
                !att.attisdropped && needs_text_form(att.atttypid, depth + 1)
            });
            pg_sys::DecrTupleDescRefCount(desc);
            return found;
        }
        let range_sub = pg_sys::get_range_subtype(base);
        range_sub != pg_sys::InvalidOid && needs_text_form(range_sub, depth + 1)
    }
}

/// Whether json text holds what jsonb cannot store: an escape `\u0000`, a UTF-16 surrogate
/// (`\ud800`-`\udfff`; a valid pair is accepted by jsonb, but telling pairs from lone ones
/// is not worth it: such text is kept as a string either way), or a number beyond
/// numeric's range (an exponent of five digits or more, or a run of more than 100,000
/// digits). False alarms only cost the value being kept as its text, which is exact too.
fn json_beyond_jsonb(text: &[u8]) -> bool {
    let escape = text.windows(6).any(|w| {
        w[0] == b'\\'
            && (w[1] == b'u' || w[1] == b'U')
            && (&w[2..6] == b"0000"
                || ((w[2] == b'd' || w[2] == b'D')
                    && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')))
    });
    escape || huge_number(text)
}

fn huge_number(text: &[u8]) -> bool {
    let mut run = 0usize;
    for (i, &c) in text.iter().enumerate() {
        if c.is_ascii_digit() {
            run += 1;
            if run > 100_000 {
                return true;
            }
            continue;
        }
        run = 0;
        if (c == b'e' || c == b'E')
            && i > 0
            && (text[i - 1].is_ascii_digit() || text[i - 1] == b'.')
        {
            let rest = &text[i + 1..];
            let rest = rest
                .strip_prefix(b"+")
                .or_else(|| rest.strip_prefix(b"-"))
                .unwrap_or(rest);
            if rest.iter().take_while(|d| d.is_ascii_digit()).count() >= 5 {
                return true;
            }
        }
    }
    false
}

/// An integer as a jsonb number.
fn integer(out: &mut Writer, v: i64) -> u32 {
    // SAFETY: int64_to_numeric returns a palloc'd numeric with a 4-byte header.
    unsafe {
        let num = pg_sys::int64_to_numeric(v);
        let len = pgrx::varlena::varsize_any(num.cast());
        out.pad();
        out.bytes(std::slice::from_raw_parts(num as *const u8, len));
        pg_sys::pfree(num.cast());
    }
    pg_sys::JENTRY_ISNUMERIC
}

/// Appends the value of a jsonb datum (its bytes after the varlena header) as a nested
/// value: a scalar's single entry, or the whole root container.
fn splice(out: &mut Writer, jsonb: &[u8]) -> u32 {
    let word = |at: usize| u32::from_ne_bytes(jsonb[at..at + 4].try_into().unwrap_or([0; 4]));
    let header = word(0);
    if header & pg_sys::JB_FSCALAR != 0 {
        // a raw scalar: a one-element array; its data starts aligned, without padding
        let entry = word(4);
        let kind = entry & pg_sys::JENTRY_TYPEMASK;
        let len = (entry & pg_sys::JENTRY_OFFLENMASK) as usize;
        if kind == pg_sys::JENTRY_ISNUMERIC {
            out.pad();
        }
        out.bytes(&jsonb[8..8 + len]);
        kind
    } else {
        out.pad();
        out.bytes(jsonb);
        pg_sys::JENTRY_ISCONTAINER
    }
}

/// The bytes of a varlena value after its header, detoasted if needed. The slice lives as
/// long as the current memory context.
///
/// # Safety
/// `datum` must be a non-null varlena datum.
unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    // SAFETY: guaranteed by the caller; pg_detoast_datum_packed returns the value itself
    // or a palloc'd untoasted copy with a 1- or 4-byte header.
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(v) as *const u8,
            pgrx::varlena::varsize_any_exhdr(v),
        )
    }
}

/// A 4-byte varlena header for a value of `len` bytes (header included).
fn varlena_header(len: usize) -> [u8; 4] {
    if cfg!(target_endian = "little") {
        ((len as u32) << 2).to_le_bytes()
    } else {
        ((len as u32) & 0x3FFF_FFFF).to_be_bytes()
    }
}

struct Writer {
    buf: Vec<u8>,
    /// Where the keys' and values' data starts (after the JEntries).
    data_start: usize,
}

impl Writer {
    fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(n),
            data_start: 0,
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }

    /// Pads to a multiple of 4 bytes (counted from the start of the datum, as PostgreSQL
    /// aligns).
    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// Writes JEntry number `i` for the data appended since `start`.
    fn entry(&mut self, entries: usize, i: usize, kind: u32, start: usize) {
        let end = self.buf.len() - self.data_start;
        if end > pg_sys::JENTRY_OFFLENMASK as usize {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "total size of jsonb object elements exceeds the maximum of {} bytes",
                    pg_sys::JENTRY_OFFLENMASK
                ),
                function_name!(),
            )
            .report(PgLogLevel::ERROR);
        }
        let field = if i % pg_sys::JB_OFFSET_STRIDE as usize == 0 {
            end as u32 | pg_sys::JENTRY_HAS_OFF
        } else {
            (self.buf.len() - start) as u32
        };
        let at = entries + 4 * i;
        self.buf[at..at + 4].copy_from_slice(&(kind | field).to_ne_bytes());
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Compares the encoder's bytes with to_jsonb's for each row of a table of many types.
    #[pg_test]
    fn row_json_matches_to_jsonb() {
        Spi::run(
            "CREATE DOMAIN rj_text AS text; CREATE DOMAIN rj_int AS int CHECK (VALUE > 0);
             CREATE TYPE rj_mood AS ENUM ('sad', 'ok'); CREATE TYPE rj_pair AS (a int, b text);
             CREATE TABLE rj_t (id int, gone int, t text, v varchar(10), c char(5), n name,
                 i2 smallint, i8 bigint, num numeric, b bool, j jsonb, js json, ts timestamptz,
                 tsl timestamp, d date, u uuid, by bytea, iv interval, ip inet, tm time,
                 f4 real, f8 float8, arr int[], tarr text[], comp rj_pair, dt rj_text,
                 di rj_int, m rj_mood, o oid, \"Ünïcode key\" text, big text);
             ALTER TABLE rj_t DROP COLUMN gone;
             INSERT INTO rj_t VALUES
               (1, 'plain', 'var', 'ab', 'nm', -32768, -9223372036854775808, 1.50, true,
                '{\"b\": [1, 2.5, {\"x\": null}], \"a\": \"s\"}', '{\"z\": 1, \"z\": 2}',
                '2024-02-29 12:34:56.789+01', '2024-02-29 12:34:56', '2024-02-29',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', '1 day 02:00',
                '10.0.0.1/8', '12:00', 1.5, 1e300, '{1,NULL,3}', '{\"a b\",NULL}',
                '(1,\"x y\")', 'dom', 7, 'ok', 42, 'ünï \"quoted\" \\ back',
                repeat('long text ', 300000));
             INSERT INTO rj_t (id, t, i2, i8, num, b, j, js, ts, tsl, d, f4, f8, arr, tarr)
               VALUES (2, '', 32767, 9223372036854775807, 'NaN', false, '1', '\"s\"',
                       'infinity', '-infinity', 'infinity', 'NaN', '-Infinity', '{}', '{}'),
                      (3, NULL, 0, 0, 'Infinity', NULL, '\"str\"', 'null', NULL, NULL,
                       NULL, -0.0, 1e-300, NULL, NULL);
             INSERT INTO rj_t (id, v, c, n, num, j) VALUES
               (4, '', '', '', '-Infinity', 'null'),
               (5, NULL, NULL, NULL, -123456789012345678901234567890.000100, '[]'),
               (6, NULL, NULL, NULL, 0.000, '12.5'),
               (7, NULL, NULL, NULL, 1e100, 'true'),
               (8, NULL, NULL, NULL, 0.1, '{}'),
               (9, NULL, NULL, NULL, NULL, '[1, [2, [3, {\"k\": 4.25}]]]');",
        )
        .unwrap();
        // a table wider than the offset stride (JB_OFFSET_STRIDE = 32 entries)
        let cols: Vec<String> = (1..=70)
            .map(|i| format!("c{i} {}", ["int", "text", "numeric", "jsonb"][i % 4]))
            .collect();
        Spi::run(&format!("CREATE TABLE rj_w ({})", cols.join(", "))).unwrap();
        let vals: Vec<String> = (1..=70)
            .map(|i| match i % 4 {
                0 => format!("{i}"),
                1 => format!("'{}'", "x".repeat(i)),
                2 => format!("{i}.{i}"),
                _ => format!("'{{\"k{i}\": [{i}, \"{i}\"]}}'"),
            })
            .collect();
        Spi::run(&format!("INSERT INTO rj_w VALUES ({})", vals.join(", "))).unwrap();
        // random rows (a fixed seed): NULLs, texts with any character, numbers of every
        // scale and sign, nested jsonb, timestamps, arrays
        Spi::run(
            "SELECT setseed(0.42);
             CREATE TABLE rj_r (id int, t text, n numeric, i bigint, s smallint, b bool,
                                j jsonb, ts timestamptz, a int[], v varchar, f float8);
             INSERT INTO rj_r
             SELECT g,
                    CASE WHEN random() < 0.1 THEN NULL ELSE
                         (SELECT string_agg(chr(CASE WHEN random() < 0.7 THEN 32 + (random() * 94)::int
                                                     ELSE 161 + (random() * 50000)::int END), '')
                            FROM generate_series(1, (random() * 40)::int)) END,
                    CASE WHEN random() < 0.1 THEN NULL
                         ELSE round((random() - 0.5)::numeric * 10::numeric ^ (random() * 30 - 10)::int,
                                    (random() * 20)::int) END,
                    CASE WHEN random() < 0.1 THEN NULL ELSE ((random() - 0.5) * 1e18)::bigint END,
                    ((random() - 0.5) * 65000)::smallint,
                    CASE WHEN random() < 0.3 THEN NULL ELSE random() < 0.5 END,
                    CASE WHEN random() < 0.2 THEN NULL
                         ELSE jsonb_build_object('k' || g, random(), 'arr',
                                jsonb_build_array(g, 'x' || g, random() < 0.5, NULL,
                                                  jsonb_build_object('deep', (random() * 1e6)::numeric(12, 3)))) END,
                    CASE WHEN random() < 0.1 THEN NULL
                         ELSE timestamptz '2000-01-01' + random() * interval '40 years' END,
                    CASE WHEN random() < 0.2 THEN NULL ELSE ARRAY[g, NULL, (random() * 100)::int] END,
                    md5(g::text), random() * 1e10
               FROM generate_series(1, 300) g",
        )
        .unwrap();
        for table in ["rj_t", "rj_w", "rj_r"] {
            let rows = compare(table);
            assert!(rows > 0, "no rows compared for {table}");
        }
    }

    /// Encodes every row of `table` and compares the bytes with to_jsonb(row)'s; returns
    /// the number of rows compared.
    fn compare(table: &str) -> usize {
        let relid = Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{table}'::regclass::oid"))
            .unwrap()
            .unwrap();
        let mut rows = 0;
        // SAFETY: the relation is opened and scanned with AccessShareLock; each tuple is
        // deformed with the relation's descriptor.
        unsafe {
            let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let tupdesc = (*rel).rd_att;
            let enc = super::RowJson::new(tupdesc, None);
            let to_jsonb = super::to_jsonb_for((*tupdesc).tdtypeid, enc.context);
            let scan = pg_sys::heap_beginscan(
                rel,
                pg_sys::GetTransactionSnapshot(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                pg_sys::ScanOptions::SO_TYPE_SEQSCAN as u32,
            );
            let (mut values, mut nulls) = (Vec::new(), Vec::new());
            loop {
                let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                super::deform(tuple, tupdesc, &mut values, &mut nulls);
                let ours = enc.encode(&values, &nulls);
                let record = pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc);
                let theirs = pg_sys::FunctionCall1Coll(to_jsonb, pg_sys::InvalidOid, record);
                let text = |d: pg_sys::Datum| {
                    let s = pgrx::direct_function_call::<&std::ffi::CStr>(
                        pg_sys::jsonb_out,
                        &[Some(d)],
                    );
                    s.map(|s| s.to_string_lossy().chars().take(300).collect::<String>())
                };
                assert_eq!(
                    super::varlena_bytes(ours),
                    super::varlena_bytes(theirs),
                    "{table}: ours {:?} to_jsonb {:?}",
                    text(ours),
                    text(theirs)
                );
                rows += 1;
            }
            pg_sys::heap_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        }
        rows
    }
}
