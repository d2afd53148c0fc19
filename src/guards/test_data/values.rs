//! Reading the text a column value holds: how each column type is read (its `Reader`),
//! and the strings of a value, arrays and json included.

use std::ffi::CStr;

use super::json_text;
use pgrx::pg_sys;

/// How to read one column's strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// A varlena string type (text, varchar, char, citext, ...): read its bytes.
    Varlena,
    /// Any other type with text (name, enums, composites, ranges, xml, hstore): the string of its
    /// output function.
    Output(pg_sys::Oid),
    Json,
    Jsonb,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub attnum: i32,
    pub name: String,
    pub reader: Reader,
    /// For arrays: the element type's length, by-value flag and alignment.
    pub array: Option<(i16, bool, std::ffi::c_char, pg_sys::Oid)>,
    pub typlen: i16,
    pub typbyval: bool,
}

/// How to read a (base) type, or `None` if it holds no text the guard scans.
pub fn reader_for(typid: pg_sys::Oid) -> Option<Reader> {
    if typid == pg_sys::JSONOID {
        return Some(Reader::Json);
    }
    if typid == pg_sys::JSONBOID {
        return Some(Reader::Jsonb);
    }
    // SAFETY: lsyscache lookups of an existing type.
    unsafe {
        let mut category: std::ffi::c_char = 0;
        let mut preferred = false;
        pg_sys::get_type_category_preferred(typid, &mut category, &mut preferred);
        let is_enum = pg_sys::type_is_enum(typid);
        let mut output = pg_sys::InvalidOid;
        let mut varlena = false;
        // Composites, ranges, xml and hstore hold text too: their text form is scanned (a value's
        // strings sit between quotes or tags there, so word boundaries hold).
        let typtype = pg_sys::get_typtype(typid) as u8;
        if typid == pg_sys::XMLOID
            || typtype == pg_sys::TYPTYPE_RANGE as u8
            || typtype == pg_sys::TYPTYPE_MULTIRANGE as u8
            || (typid != pg_sys::RECORDOID && pg_sys::type_is_rowtype(typid))
            || {
                let name = crate::core::pg::cstr_or(pg_sys::format_type_be(typid), "");
                name == "hstore" || name.ends_with(".hstore")
            }
        {
            pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena);
            return Some(Reader::Output(output));
        }
        if category as u8 != b'S' && !is_enum {
            return None;
        }
        pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena);
        if varlena && !is_enum && typid != pg_sys::NAMEOID {
            Some(Reader::Varlena)
        } else {
            Some(Reader::Output(output))
        }
    }
}

/// Calls `visit` with each string a column value holds, until it returns true.
///
/// # Safety
/// `datum` must be a non-null value of the column's type.
pub unsafe fn strings(
    datum: pg_sys::Datum,
    col: &Column,
    visit: &mut dyn FnMut(&str) -> bool,
) -> bool {
    // SAFETY: guaranteed by the caller; arrays are deconstructed with their element's
    // storage parameters.
    unsafe {
        match col.array {
            None => one(datum, col.reader, visit),
            Some((len, byval, align, element)) => {
                let array =
                    pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
                let mut values: *mut pg_sys::Datum = std::ptr::null_mut();
                let mut nulls: *mut bool = std::ptr::null_mut();
                let mut n = 0;
                pg_sys::deconstruct_array(
                    array,
                    element,
                    len as i32,
                    byval,
                    align,
                    &mut values,
                    &mut nulls,
                    &mut n,
                );
                for i in 0..n as usize {
                    if !*nulls.add(i) && one(*values.add(i), col.reader, visit) {
                        return true;
                    }
                }
                false
            }
        }
    }
}

/// # Safety
/// `datum` must be a non-null value of a type `reader` reads.
unsafe fn one(datum: pg_sys::Datum, reader: Reader, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match reader {
            Reader::Varlena => {
                let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                let bytes = pgrx::varlena::varlena_to_byte_slice(v);
                // SAFETY (from_utf8_unchecked): a text value is valid in the database's
                // encoding (every input path of PostgreSQL verifies it), so in a UTF-8
                // database it needs no second check.
                if utf8_database() {
                    visit(std::str::from_utf8_unchecked(bytes))
                } else {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => visit(s),
                        Err(_) => visit(&String::from_utf8_lossy(bytes)),
                    }
                }
            }
            Reader::Output(f) => {
                let s = pg_sys::OidOutputFunctionCall(f, datum);
                visit(&CStr::from_ptr(s).to_string_lossy())
            }
            Reader::Json => {
                // json is stored as text
                let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                json_text::strings(pgrx::varlena::varlena_to_byte_slice(v), visit)
            }
            Reader::Jsonb => {
                let text = pg_sys::OidOutputFunctionCall(jsonb_out(), datum);
                json_text::strings(CStr::from_ptr(text).to_bytes(), visit)
            }
        }
    }
}

/// jsonb's output function.
fn jsonb_out() -> pg_sys::Oid {
    static OUT: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let oid = *OUT.get_or_init(|| {
        let (mut out, mut varlena) = (pg_sys::InvalidOid, false);
        // SAFETY: a syscache lookup of a built-in type.
        unsafe { pg_sys::getTypeOutputInfo(pg_sys::JSONBOID, &mut out, &mut varlena) };
        out.to_u32()
    });
    pg_sys::Oid::from(oid)
}

/// Whether this database's encoding is UTF-8 (fixed for the life of the backend).
fn utf8_database() -> bool {
    static UTF8: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: GetDatabaseEncoding reads a backend global set at connection start.
    *UTF8.get_or_init(|| unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32)
}
