/* allocator_blocks.h — the records of cuda/allocator.c's caching allocator (a block of device
 * memory, the cache of one device) and the free-list operations on them (allocator_blocks.c).
 * For allocator.c only; each function expects the caller to hold the allocator's lock. */
#ifndef CNN_CUDA_ALLOCATOR_BLOCKS_H
#define CNN_CUDA_ALLOCATOR_BLOCKS_H

#include "cuda_check.h"

#define SMALL_LIMIT ((size_t)1 << 20) /* requests up to 1 MiB come from the small sizes */
#define SMALL_ROUND ((size_t)512)
#define LARGE_ROUND ((size_t)2 << 20)

typedef struct dev_cache dev_cache;

typedef struct block {
    void *ptr;
    size_t size;
    /* The stream that allocated it: work queued there is ordered before any reuse by that same
     * stream. NULL once that stream was drained and destroyed: then any stream may take it. */
    cudaStream_t stream;
    /* Another stream the block was handed to (cnn_cuda_record_stream): at release an event is
     * recorded there, and the block is reused only once that event has completed. */
    cudaStream_t use_stream;
    cudaEvent_t ready; /* created on first need */
    bool pending;      /* `ready` was recorded and may not have completed */
    dev_cache *dev;
    struct block *prev, *next; /* in the device's live list or its free list */
    /* The blocks before and after this one in its cudaMalloc'd segment (NULL at its ends). */
    struct block *seg_prev, *seg_next;
    bool is_free;
    /* The graph pool the block belongs to (0: the general cache; a whole segment shares one).
     * Only allocations made while that graph is captured may take it. */
    int pool;
    /* A block of another pool released while a graph was captured: the captured work may
     * still use it at each replay, so it is kept out of the cache until that graph is gone. */
    int held_by;
} block;

struct dev_cache {
    int device;
    block *free_list; /* ascending size, for best fit */
    block *live;      /* handed out and not yet released */
    block *held;      /* released while a graph was captured (held_by), not yet reusable */
    /* The capture in progress on this device (0: none) and its stream, whose allocations
     * come from that graph's pool; the last pool number handed out. */
    int capture_pool;
    cudaStream_t capture_stream;
    int last_pool;
    /* Threads waiting for the whole device now (device_wait_begin: emptying the cache, a copy
     * under a CPU context): a capture waits for them to finish, as their wait would break it. */
    int device_waits;
    cnn_cuda_memory_stats stats;
};

/* Unlinks b from / pushes b at the front of a list (the live list, the held list). */
void cnn_block_list_remove(block **head, block *b);
void cnn_block_list_push(block **head, block *b);
/* The size a request of `bytes` takes: 512 B steps up to 1 MiB, 2 MiB steps above. */
size_t cnn_cache_round_size(size_t bytes);
/* Adds size to the allocated bytes and the peak. */
void cnn_cache_note_allocated(dev_cache *dc, size_t size);
/* Best fit among the free blocks of `pool` that `stream` may reuse, taken off the free list
 * (a large one split); NULL if none. */
block *cnn_cache_take_free(dev_cache *dc, size_t size, cudaStream_t stream, int pool);
/* Puts a released block (in no list) back in the free list of its device. */
void cnn_cache_return(block *b);
/* Merges the free blocks a second stream's work kept apart once that work is done. */
void cnn_cache_coalesce(dev_cache *dc);

#endif /* CNN_CUDA_ALLOCATOR_BLOCKS_H */
