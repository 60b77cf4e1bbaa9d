/*
 * Test-only stand-in for bcryptprimitives.dll under Wine 8 (Debian 12),
 * which lacks it. Rust's standard library imports ProcessPrng from it on
 * Windows (every supported Windows has it). Built by tests/wine.rs next to
 * a copy of portwatch.exe, never shipped.
 */
#include <windows.h>

/* advapi32's RtlGenRandom. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
