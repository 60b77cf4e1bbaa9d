/* The header ndis-sys's hand-written types come from. ndis.h with NDIS_WDM
   pulls in wdm.h (IO_STACK_LOCATION), ntddndis.h (NDIS_OBJECT_HEADER) and
   ifdef.h (NET_LUID). The NDIS630 / NDIS_WDM defines are passed by build.rs. */
#include <ndis.h>
