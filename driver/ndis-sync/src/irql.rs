//! IRQL tokens: zero-sized proofs of the processor's current IRQL.
//!
//! A token is `!Send` and `!Sync` (an IRQL belongs to one processor and one
//! stretch of code) and `unsafe` to create from nothing: only code that knows
//! its IRQL (an entry point whose IRQL the documentation states, an NDIS
//! `*_DISPATCH_LEVEL` flag) may forge one. Everything else receives a token
//! from its caller, or a `&mut Dispatch` from a held lock.
//!
//! Locks take the caller's token by `&mut` for as long as they are held. That
//! exclusive borrow is what turns lock-ordering and IRQL mistakes into compile
//! errors: while a guard lives, the caller's token cannot be used to take a
//! second lock or to call anything that needs `&Passive`.

use core::marker::PhantomData;

/// Makes a type neither `Send` nor `Sync`.
pub(crate) type NotSendSync = PhantomData<*mut ()>;

/// Proof that the current IRQL is `PASSIVE_LEVEL`.
///
/// Needed by operations that wait, such as [`Rundown::run_down`](crate::Rundown::run_down).
/// Also accepted wherever an [`AtMostDispatch`] token is, by `&mut`.
#[derive(Debug)]
pub struct Passive {
    _not_send_sync: NotSendSync,
}

/// Proof that the current IRQL is exactly `DISPATCH_LEVEL`.
///
/// Every held lock lends one out (`SpinLockGuard::dispatch`, the closures of
/// [`RwLock`](crate::RwLock)); its lifetime is the lock's hold, so a lock
/// taken with it cannot outlive the lock that proved the IRQL.
#[derive(Debug)]
pub struct Dispatch {
    _not_send_sync: NotSendSync,
}

/// Proof that the current IRQL is at most `DISPATCH_LEVEL`, exact level unknown.
///
/// What an NDIS callback gets when its `*_DISPATCH_LEVEL` flag is clear: the
/// caller may be at PASSIVE or at DISPATCH, and the driver must not query
/// the IRQL to find out.
#[derive(Debug)]
pub struct MaybeDispatch {
    _not_send_sync: NotSendSync,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Passive {}
    impl Sealed for super::Dispatch {}
    impl Sealed for super::MaybeDispatch {}
    impl Sealed for crate::Apc {}
    impl Sealed for crate::PassiveCritical {}
}

/// A token proving the IRQL is at most `DISPATCH_LEVEL`: [`Passive`],
/// [`MaybeDispatch`] or [`Dispatch`]. Sealed.
pub trait AtMostDispatch: sealed::Sealed {
    /// `true` when the token proves the IRQL is exactly `DISPATCH_LEVEL`, so
    /// the cheaper at-dispatch forms of the lock functions may be used.
    const AT_DISPATCH: bool;
}

impl AtMostDispatch for Passive {
    const AT_DISPATCH: bool = false;
}

impl AtMostDispatch for MaybeDispatch {
    const AT_DISPATCH: bool = false;
}

impl AtMostDispatch for Dispatch {
    const AT_DISPATCH: bool = true;
}

impl Passive {
    /// Creates a `PASSIVE_LEVEL` token.
    ///
    /// # Safety
    ///
    /// The current IRQL must be `PASSIVE_LEVEL`, and must stay so for as long
    /// as the token (or a borrow of it) is used. The host model checks this
    /// (rule `PassiveTokenNotAtPassive`).
    ///
    /// ```
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// # let _ = passive;
    /// ```
    pub unsafe fn new_unchecked() -> Self {
        crate::backend::check_token_irql(crate::backend::TokenIrql::Passive);
        Self { _not_send_sync: PhantomData }
    }
}

impl Dispatch {
    /// Creates a `DISPATCH_LEVEL` token.
    ///
    /// # Safety
    ///
    /// The current IRQL must be `DISPATCH_LEVEL`, and must stay so for as long
    /// as the token (or a borrow of it) is used. The host model checks this
    /// (rule `DispatchTokenNotAtDispatch`).
    ///
    /// ```
    /// # #[cfg(not(target_os = "windows"))]
    /// ndis_sync::host::at_irql(ndis_sync::DISPATCH_LEVEL, || {
    ///     // SAFETY: at_irql raised this thread to DISPATCH_LEVEL.
    ///     let dispatch = unsafe { ndis_sync::Dispatch::new_unchecked() };
    ///     # let _ = dispatch;
    /// });
    /// ```
    pub unsafe fn new_unchecked() -> Self {
        crate::backend::check_token_irql(crate::backend::TokenIrql::Dispatch);
        Self { _not_send_sync: PhantomData }
    }
}

impl MaybeDispatch {
    /// Creates an "at most `DISPATCH_LEVEL`" token.
    ///
    /// # Safety
    ///
    /// The current IRQL must be `PASSIVE_LEVEL`, `APC_LEVEL` or
    /// `DISPATCH_LEVEL`, and must stay at most `DISPATCH_LEVEL` while the
    /// token is used. The host model checks this (rule
    /// `MaybeDispatchTokenAboveDispatch`).
    ///
    /// ```
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL, which is <= DISPATCH_LEVEL.
    /// let irql = unsafe { ndis_sync::MaybeDispatch::new_unchecked() };
    /// # let _ = irql;
    /// ```
    pub unsafe fn new_unchecked() -> Self {
        crate::backend::check_token_irql(crate::backend::TokenIrql::AtMostDispatch);
        Self { _not_send_sync: PhantomData }
    }
}

/// The IRQL an NDIS data-path or status callback was entered at, as told by
/// its `*_DISPATCH_LEVEL` flag (`NDIS_SEND_FLAGS_DISPATCH_LEVEL`,
/// `NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL`, ...).
///
/// Only ever seen behind a `&mut` borrowed for one call of
/// [`CallbackIrql::with`]: its token cannot be moved out, stored in a
/// `static` or in anything that outlives the callback, and while a lock
/// taken with it is held it cannot be used again.
///
/// ```compile_fail,E0521
/// use ndis_sync::CallbackIrql;
/// let mut kept = None;
/// // SAFETY: flag clear, and a test thread runs at PASSIVE_LEVEL.
/// unsafe { CallbackIrql::with(false, |irql| kept = Some(irql)) };
/// ```
#[derive(Debug)]
pub enum CallbackIrql {
    /// The flag was set: the callback runs at `DISPATCH_LEVEL`.
    Dispatch(Dispatch),
    /// The flag was clear: the callback runs at `DISPATCH_LEVEL` or below.
    Unknown(MaybeDispatch),
}

impl CallbackIrql {
    /// Runs `f` with the token an NDIS `*_DISPATCH_LEVEL` flag proves,
    /// borrowed for the call only.
    ///
    /// # Safety
    ///
    /// `at_dispatch` must be the flag NDIS passed to the running callback
    /// (set only when the IRQL is `DISPATCH_LEVEL`), the callback must run at
    /// most at `DISPATCH_LEVEL`, as every NDIS data-path callback does, and
    /// the IRQL must not change during `f` except through the locks it takes.
    /// Call it once, where the callback starts, with no lock held: a second
    /// call inside a held lock would forge a second token (the host model
    /// reports it, rule `CallbackTokenInsideLock`).
    ///
    /// ```
    /// use ndis_sync::{CallbackIrql, SpinLock};
    /// ndis_sync::stack_pin_init!(let lock = SpinLock::new(0));
    /// // SAFETY: flag clear, and a test thread runs at PASSIVE_LEVEL.
    /// let seen = unsafe {
    ///     CallbackIrql::with(false, |irql| match irql {
    ///         CallbackIrql::Dispatch(dispatch) => *lock.lock(dispatch),
    ///         CallbackIrql::Unknown(maybe) => *lock.lock(maybe),
    ///     })
    /// };
    /// assert_eq!(seen, 0);
    /// ```
    #[track_caller]
    pub unsafe fn with<R>(at_dispatch: bool, f: impl FnOnce(&mut CallbackIrql) -> R) -> R {
        crate::backend::check_callback_entry();
        let mut irql = if at_dispatch {
            // SAFETY: the caller guarantees the flag is set only at DISPATCH_LEVEL.
            Self::Dispatch(unsafe { Dispatch::new_unchecked() })
        } else {
            // SAFETY: the caller guarantees the callback runs at most at DISPATCH_LEVEL.
            Self::Unknown(unsafe { MaybeDispatch::new_unchecked() })
        };
        f(&mut irql)
    }

    /// `true` when the flag said `DISPATCH_LEVEL`.
    ///
    /// ```
    /// // SAFETY: flag clear, and a test thread runs at PASSIVE_LEVEL.
    /// let at_dispatch = unsafe { ndis_sync::CallbackIrql::with(false, |irql| irql.is_dispatch()) };
    /// assert!(!at_dispatch);
    /// ```
    pub fn is_dispatch(&self) -> bool {
        matches!(self, Self::Dispatch(_))
    }
}
