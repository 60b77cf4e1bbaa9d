//! Comparing two layouts of one C type: ndis-sys's and the one bindgen
//! generated from the WDK headers.

use std::fmt;

/// Where a field lies and what its type occupies (for a whole type:
/// offset 0, its size and alignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Offset from the start of the compared type, bytes.
    pub offset: usize,
    /// `size_of` the field's type.
    pub size: usize,
    /// `align_of` the field's type.
    pub align: usize,
}

impl Layout {
    /// The layout of a whole type `T`.
    pub const fn of_type<T>() -> Self {
        Self { offset: 0, size: size_of::<T>(), align: align_of::<T>() }
    }

    /// The layout of a field at `offset` whose type is the one `_project`
    /// returns. `_project` is never called: it only names the field's type.
    pub const fn of_field<T, F>(offset: usize, _project: fn(&T) -> &F) -> Self {
        Self { offset, size: size_of::<F>(), align: align_of::<F>() }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}, size {}, align {}", self.offset, self.size, self.align)
    }
}

/// One compared item: the whole type or one field, as ndis-sys and as the
/// C header lay it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compared {
    /// The item in ndis-sys (`NET_BUFFER`, `NET_BUFFER.NdisReserved.0`).
    pub ours: String,
    /// The same item in the bindgen types (`NET_BUFFER.NdisReserved`).
    pub theirs: String,
    /// ndis-sys's layout.
    pub ours_layout: Layout,
    /// The C header's layout.
    pub c_layout: Layout,
}

impl Compared {
    /// Whether the two layouts agree in offset, size and alignment.
    pub fn matches(&self) -> bool {
        self.ours_layout == self.c_layout
    }
}

impl fmt::Display for Compared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ndis-sys {} ({}) vs ndis.h {} ({})", self.ours, self.ours_layout, self.theirs, self.c_layout)
    }
}

/// Every item of one hand-written type: the whole type first, then each
/// field ndis-sys declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The compared items.
    pub items: Vec<Compared>,
}

impl Comparison {
    /// The items whose layouts differ.
    pub fn mismatches(&self) -> Vec<&Compared> {
        self.items.iter().filter(|item| !item.matches()).collect()
    }

    /// `Err` with one line per mismatch, naming both sides and their
    /// layouts; `Ok` with the number of items compared.
    pub fn check(&self) -> Result<usize, String> {
        let mismatches = self.mismatches();
        if mismatches.is_empty() {
            return Ok(self.items.len());
        }
        let title = self.items.first().map_or("?", |whole| whole.ours.as_str());
        let mut report = format!("{title}: {} of {} layouts differ from ndis.h", mismatches.len(), self.items.len());
        for item in mismatches {
            report.push_str(&format!("\n  {item}"));
        }
        Err(report)
    }

    /// Panics with [`Comparison::check`]'s report when a layout differs.
    pub fn assert_matches(&self) {
        if let Err(report) = self.check() {
            panic!("{report}");
        }
    }
}

/// Compares a hand-written type with its bindgen counterpart, field by
/// field, into a [`Comparison`].
///
/// ```text
/// compare_layout!(struct ndis_sys::NET_BUFFER_LIST as c::NET_BUFFER_LIST {
///     Next => __bindgen_anon_1.__bindgen_anon_1.Next,
///     NdisReserved.0 => NdisReserved,
///     ...
/// })
/// ```
///
/// * Left of `=>`: a field of the ndis-sys type, with `.0` to look inside
///   an alignment wrapper (`Align16`, `PointerAligned`). Right: the path of
///   the same field in the bindgen type (through bindgen's `__bindgen_anon_N`
///   members where C has anonymous unions or structs).
/// * `struct`: the ndis-sys fields must all be listed (the macro fails to
///   compile otherwise); fields that exist only in ndis-sys (explicit
///   padding) go in a trailing `not_in_c { .. }`. `union`: no such check.
/// * `as c::T[a.b]` compares with the member `a.b` of the bindgen type
///   (ndis-sys's views of `IO_STACK_LOCATION.Parameters` arms); field paths
///   are then still written from the bindgen type's root, and offsets are
///   counted from the member.
#[macro_export]
macro_rules! compare_layout {
    (struct $ours:path as $theirs:path $([$($base:ident).+])? {
        $($of:ident $(. $orest:tt)* => $($tf:ident).+),* $(,)?
    } $(not_in_c { $($pad:ident),* $(,)? })?) => {{
        // Fails to compile when ndis-sys declares a field not listed here.
        #[allow(dead_code)]
        fn every_field_is_listed(value: &$ours) {
            let $ours { $($of: _,)* $($($pad: _,)*)? } = value;
        }
        $crate::compare_layout!(@compare $ours, $theirs, [$($($base).+)?], $($of $(. $orest)* => $($tf).+),*)
    }};
    (union $ours:path as $theirs:path {
        $($of:ident $(. $orest:tt)* => $($tf:ident).+),* $(,)?
    }) => {
        $crate::compare_layout!(@compare $ours, $theirs, [], $($of $(. $orest)* => $($tf).+),*)
    };
    (@compare $ours:path, $theirs:path, [$($base:ident).*], $($of:ident $(. $orest:tt)* => $($tf:ident).+),*) => {{
        use $crate::layout::{Compared, Comparison, Layout};
        let base: usize = $crate::compare_layout!(@base_offset $theirs, [$($base).*]);
        let mut items = vec![Compared {
            ours: stringify!($ours).replace(' ', ""),
            theirs: concat!(stringify!($theirs) $(, ".", stringify!($base))*).replace(' ', ""),
            ours_layout: Layout::of_type::<$ours>(),
            c_layout: $crate::compare_layout!(@base_layout $theirs, [$($base).*]),
        }];
        $(
            #[allow(unused_unsafe)]
            let item = Compared {
                ours: stringify!($of $(. $orest)*).replace(' ', ""),
                theirs: stringify!($($tf).+).replace(' ', ""),
                ours_layout: Layout::of_field(
                    ::core::mem::offset_of!($ours, $of $(. $orest)*),
                    // SAFETY: never called; the projection only names the
                    // field's type (a union field needs `unsafe` to name).
                    |s: &$ours| unsafe { &s.$of $(. $orest)* },
                ),
                c_layout: Layout::of_field(
                    ::core::mem::offset_of!($theirs, $($tf).+) - base,
                    // SAFETY: never called; the projection only names the
                    // field's type (through unions, which need `unsafe`).
                    |s: &$theirs| unsafe { &s.$($tf).+ },
                ),
            };
            items.push(item);
        )*
        Comparison { items }
    }};
    (@base_offset $theirs:path, []) => { 0 };
    (@base_offset $theirs:path, [$($base:ident).+]) => { ::core::mem::offset_of!($theirs, $($base).+) };
    (@base_layout $theirs:path, []) => { $crate::layout::Layout::of_type::<$theirs>() };
    (@base_layout $theirs:path, [$($base:ident).+]) => {
        // SAFETY: never called; the projection only names the member's type
        // (a union member, which needs `unsafe` to name).
        $crate::layout::Layout::of_field(0, |s: &$theirs| unsafe { &s.$($base).+ })
    };
}

#[cfg(test)]
mod tests {
    use super::{Compared, Comparison, Layout};

    #[repr(C)]
    struct Narrow {
        a: u8,
        b: u16,
    }

    #[repr(C)]
    struct Wide {
        a: u8,
        b: u32,
    }

    fn compared(ours: Layout, theirs: Layout) -> Compared {
        Compared { ours: "Ours.b".into(), theirs: "Theirs.b".into(), ours_layout: ours, c_layout: theirs }
    }

    #[test]
    fn field_layouts_are_measured_from_the_projected_type() {
        let b = Layout::of_field(core::mem::offset_of!(Wide, b), |s: &Wide| &s.b);
        assert_eq!(b, Layout { offset: 4, size: 4, align: 4 });
        assert_eq!(Layout::of_type::<Narrow>(), Layout { offset: 0, size: 4, align: 2 });
    }

    #[test]
    fn equal_layouts_pass_and_count_the_items() {
        let same = Layout { offset: 8, size: 4, align: 4 };
        let comparison = Comparison { items: vec![compared(same, same), compared(same, same)] };
        assert_eq!(comparison.check(), Ok(2));
    }

    #[test]
    fn each_difference_is_reported_with_both_layouts() {
        let narrow = Layout::of_field(core::mem::offset_of!(Narrow, b), |s: &Narrow| &s.b);
        let wide = Layout::of_field(core::mem::offset_of!(Wide, b), |s: &Wide| &s.b);
        let comparison = Comparison {
            items: vec![
                compared(Layout::of_type::<Narrow>(), Layout::of_type::<Wide>()),
                compared(narrow, narrow),
                compared(narrow, wide),
            ],
        };
        let report = comparison.check().expect_err("the layouts differ");
        assert!(report.starts_with("Ours.b: 2 of 3 layouts differ from ndis.h"), "{report}");
        assert!(
            report.contains("(offset 2, size 2, align 2) vs ndis.h Theirs.b (offset 4, size 4, align 4)"),
            "{report}"
        );
        assert_eq!(report.lines().count(), 3, "{report}");
    }

    #[test]
    fn the_macro_lists_the_whole_type_then_each_field() {
        let comparison = crate::compare_layout!(struct Narrow as Wide { a => a, b => b });
        let names: Vec<_> = comparison.items.iter().map(|i| (i.ours.as_str(), i.theirs.as_str())).collect();
        assert_eq!(names, [("Narrow", "Wide"), ("a", "a"), ("b", "b")]);
        let differing: Vec<_> = comparison.mismatches().iter().map(|i| i.ours.as_str()).collect();
        assert_eq!(differing, ["Narrow", "b"]);
    }
}
