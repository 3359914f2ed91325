//! Values in `.wast` scripts: turning invocation arguments into runtime values, matching results
//! against `assert_return` patterns (NaN patterns, reference patterns) and printing values in
//! failure messages.

use anyhow::{bail, Result};
use fnvm_runtime::Val;
use wast::core::{AbstractHeapType, HeapType, NanPattern, WastArgCore, WastRetCore};
use wast::{WastArg, WastRet};

/// Converts an `invoke` argument.
pub(super) fn arg(arg: &WastArg<'_>) -> Result<Val> {
    let WastArg::Core(arg) = arg else {
        bail!("component-model arguments are not supported");
    };
    Ok(match arg {
        WastArgCore::I32(v) => Val::I32(*v),
        WastArgCore::I64(v) => Val::I64(*v),
        WastArgCore::F32(v) => Val::F32(v.bits),
        WastArgCore::F64(v) => Val::F64(v.bits),
        WastArgCore::RefNull(heap) => match null_kind(heap)? {
            RefKind::Func => Val::FuncRef(None),
            RefKind::Extern => Val::ExternRef(None),
        },
        WastArgCore::RefExtern(v) => Val::ExternRef(Some(*v)),
        WastArgCore::V128(_) => bail!("v128 arguments are not supported (no SIMD)"),
        WastArgCore::RefHost(_) => bail!("ref.host arguments are not supported"),
    })
}

/// The two reference types of WebAssembly 2.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefKind {
    Func,
    Extern,
}

fn null_kind(heap: &HeapType<'_>) -> Result<RefKind> {
    match heap {
        HeapType::Abstract {
            shared: false,
            ty: AbstractHeapType::Func | AbstractHeapType::NoFunc,
        } => Ok(RefKind::Func),
        HeapType::Abstract {
            shared: false,
            ty: AbstractHeapType::Extern | AbstractHeapType::NoExtern,
        } => Ok(RefKind::Extern),
        other => bail!("reference type {other:?} is not supported"),
    }
}

/// Whether `actual` matches the `assert_return` pattern `expected`. Errors on patterns of
/// features fnvm does not have (SIMD, GC).
pub(super) fn matches(expected: &WastRet<'_>, actual: &Val) -> Result<bool> {
    let WastRet::Core(expected) = expected else {
        bail!("component-model results are not supported");
    };
    matches_core(expected, actual)
}

fn matches_core(expected: &WastRetCore<'_>, actual: &Val) -> Result<bool> {
    Ok(match (expected, actual) {
        (WastRetCore::I32(e), Val::I32(a)) => e == a,
        (WastRetCore::I64(e), Val::I64(a)) => e == a,
        (WastRetCore::F32(e), Val::F32(a)) => match e {
            NanPattern::CanonicalNan => a & 0x7fff_ffff == 0x7fc0_0000,
            NanPattern::ArithmeticNan => a & 0x7f80_0000 == 0x7f80_0000 && a & 0x0040_0000 != 0,
            NanPattern::Value(e) => e.bits == *a,
        },
        (WastRetCore::F64(e), Val::F64(a)) => match e {
            NanPattern::CanonicalNan => a & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
            NanPattern::ArithmeticNan => {
                a & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000 && a & 0x0008_0000_0000_0000 != 0
            }
            NanPattern::Value(e) => e.bits == *a,
        },
        (WastRetCore::RefNull(heap), Val::FuncRef(r)) => {
            r.is_none() && null_allows(heap.as_ref(), RefKind::Func)?
        }
        (WastRetCore::RefNull(heap), Val::ExternRef(r)) => {
            r.is_none() && null_allows(heap.as_ref(), RefKind::Extern)?
        }
        (WastRetCore::RefExtern(e), Val::ExternRef(a)) => match (e, a) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(e), Some(a)) => e == a,
        },
        // The runtime's function handles carry no module-level index to compare with, so any
        // non-null function reference matches `(ref.func)` and `(ref.func $f)`.
        (WastRetCore::RefFunc(_), Val::FuncRef(a)) => a.is_some(),
        (WastRetCore::Either(cases), actual) => {
            for case in cases {
                if matches_core(case, actual)? {
                    return Ok(true);
                }
            }
            false
        }
        (
            WastRetCore::V128(_)
            | WastRetCore::RefHost(_)
            | WastRetCore::RefAny
            | WastRetCore::RefEq
            | WastRetCore::RefArray
            | WastRetCore::RefStruct
            | WastRetCore::RefI31
            | WastRetCore::RefI31Shared,
            _,
        ) => bail!("result pattern {expected:?} is not supported"),
        // A value of another type than the pattern's.
        _ => false,
    })
}

/// Whether a `(ref.null heap)` pattern accepts a null of `kind`; no heap type accepts any null.
fn null_allows(heap: Option<&HeapType<'_>>, kind: RefKind) -> Result<bool> {
    match heap {
        None => Ok(true),
        Some(heap) => Ok(null_kind(heap)? == kind),
    }
}

/// A value as failure messages show it: type, value and, for floats, the bits.
pub(super) fn show(val: &Val) -> String {
    match val {
        Val::I32(v) => format!("i32:{v}"),
        Val::I64(v) => format!("i64:{v}"),
        Val::F32(bits) => format!("f32:{} ({bits:#010x})", f32::from_bits(*bits)),
        Val::F64(bits) => format!("f64:{} ({bits:#018x})", f64::from_bits(*bits)),
        Val::FuncRef(None) => "ref.null func".to_string(),
        Val::FuncRef(Some(_)) => "ref.func".to_string(),
        Val::ExternRef(None) => "ref.null extern".to_string(),
        Val::ExternRef(Some(v)) => format!("ref.extern {v}"),
    }
}

/// A list of values as failure messages show it.
pub(super) fn show_all(vals: &[Val]) -> String {
    let shown: Vec<String> = vals.iter().map(show).collect();
    format!("[{}]", shown.join(", "))
}

/// An `assert_return` pattern as failure messages show it.
pub(super) fn show_pattern(ret: &WastRet<'_>) -> String {
    let WastRet::Core(ret) = ret else {
        return format!("{ret:?}");
    };
    match ret {
        WastRetCore::I32(v) => format!("i32:{v}"),
        WastRetCore::I64(v) => format!("i64:{v}"),
        WastRetCore::F32(NanPattern::Value(v)) => {
            format!("f32:{} ({:#010x})", f32::from_bits(v.bits), v.bits)
        }
        WastRetCore::F64(NanPattern::Value(v)) => {
            format!("f64:{} ({:#018x})", f64::from_bits(v.bits), v.bits)
        }
        WastRetCore::F32(NanPattern::CanonicalNan) => "f32:nan:canonical".to_string(),
        WastRetCore::F32(NanPattern::ArithmeticNan) => "f32:nan:arithmetic".to_string(),
        WastRetCore::F64(NanPattern::CanonicalNan) => "f64:nan:canonical".to_string(),
        WastRetCore::F64(NanPattern::ArithmeticNan) => "f64:nan:arithmetic".to_string(),
        WastRetCore::RefNull(Some(h)) => match null_kind(h) {
            Ok(RefKind::Func) => "ref.null func".to_string(),
            Ok(RefKind::Extern) => "ref.null extern".to_string(),
            Err(_) => format!("ref.null {h:?}"),
        },
        WastRetCore::RefNull(None) => "ref.null".to_string(),
        WastRetCore::RefExtern(Some(v)) => format!("ref.extern {v}"),
        WastRetCore::RefExtern(None) => "ref.extern".to_string(),
        WastRetCore::RefFunc(_) => "ref.func".to_string(),
        other => format!("{other:?}"),
    }
}

/// A list of patterns as failure messages show it.
pub(super) fn show_patterns(rets: &[WastRet<'_>]) -> String {
    let shown: Vec<String> = rets.iter().map(show_pattern).collect();
    format!("[{}]", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wast::token::{F32, F64};

    fn f32_pattern(p: NanPattern<F32>) -> WastRet<'static> {
        WastRet::Core(WastRetCore::F32(p))
    }

    fn f64_pattern(p: NanPattern<F64>) -> WastRet<'static> {
        WastRet::Core(WastRetCore::F64(p))
    }

    #[test]
    fn nan_patterns() {
        let canonical = f32_pattern(NanPattern::CanonicalNan);
        let arithmetic = f32_pattern(NanPattern::ArithmeticNan);
        assert!(matches(&canonical, &Val::F32(0x7fc0_0000)).unwrap());
        assert!(matches(&canonical, &Val::F32(0xffc0_0000)).unwrap());
        assert!(!matches(&canonical, &Val::F32(0x7fc0_0001)).unwrap());
        assert!(matches(&arithmetic, &Val::F32(0x7fc0_0001)).unwrap());
        assert!(!matches(&arithmetic, &Val::F32(0x7f80_0001)).unwrap());
        assert!(!matches(&arithmetic, &Val::F32(0x3f80_0000)).unwrap());
        assert!(!matches(&canonical, &Val::F64(0x7ff8_0000_0000_0000)).unwrap());

        let canonical = f64_pattern(NanPattern::CanonicalNan);
        let arithmetic = f64_pattern(NanPattern::ArithmeticNan);
        assert!(matches(&canonical, &Val::F64(0xfff8_0000_0000_0000)).unwrap());
        assert!(!matches(&canonical, &Val::F64(0x7ff8_0000_0000_0001)).unwrap());
        assert!(matches(&arithmetic, &Val::F64(0x7ff8_0000_0000_0001)).unwrap());
        assert!(!matches(&arithmetic, &Val::F64(0x7ff0_0000_0000_0001)).unwrap());
        assert!(!matches(&arithmetic, &Val::F64(0x7ff0_0000_0000_0000)).unwrap());
    }

    #[test]
    fn reference_patterns() {
        let null_extern = WastRet::Core(WastRetCore::RefNull(Some(HeapType::Abstract {
            shared: false,
            ty: AbstractHeapType::Extern,
        })));
        assert!(matches(&null_extern, &Val::ExternRef(None)).unwrap());
        assert!(!matches(&null_extern, &Val::FuncRef(None)).unwrap());
        assert!(!matches(&null_extern, &Val::ExternRef(Some(1))).unwrap());
        let any_null = WastRet::Core(WastRetCore::RefNull(None));
        assert!(matches(&any_null, &Val::FuncRef(None)).unwrap());
        let extern_1 = WastRet::Core(WastRetCore::RefExtern(Some(1)));
        assert!(matches(&extern_1, &Val::ExternRef(Some(1))).unwrap());
        assert!(!matches(&extern_1, &Val::ExternRef(Some(2))).unwrap());
        assert!(!matches(&extern_1, &Val::ExternRef(None)).unwrap());
        let func = WastRet::Core(WastRetCore::RefFunc(None));
        assert!(!matches(&func, &Val::FuncRef(None)).unwrap());
    }
}
