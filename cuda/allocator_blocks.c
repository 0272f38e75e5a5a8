/* allocator_blocks.c — the free lists of one device's cache for cuda/allocator.c: best fit,
 * splitting a large block and merging released neighbours, rounding, and returning a released
 * block (an event recorded where a second stream used it). Every function runs under the
 * allocator's lock, which the caller holds; nothing here is process-wide. */
#include "allocator_blocks.h"

#include <stdlib.h>

void cnn_block_list_remove(block **head, block *b)
{
    if (b->prev) b->prev->next = b->next;
    else *head = b->next;
    if (b->next) b->next->prev = b->prev;
    b->prev = b->next = NULL;
}

void cnn_block_list_push(block **head, block *b)
{
    b->prev = NULL;
    b->next = *head;
    if (*head) (*head)->prev = b;
    *head = b;
}

static void free_list_insert(dev_cache *dc, block *b)
{
    block *prev = NULL, *cur = dc->free_list;
    while (cur && cur->size < b->size) {
        prev = cur;
        cur = cur->next;
    }
    b->prev = prev;
    b->next = cur;
    if (cur) cur->prev = b;
    if (prev) prev->next = b;
    else dc->free_list = b;
}

void cnn_cache_note_allocated(dev_cache *dc, size_t size)
{
    dc->stats.allocated_bytes += size;
    if (dc->stats.allocated_bytes > dc->stats.peak_allocated_bytes)
        dc->stats.peak_allocated_bytes = dc->stats.allocated_bytes;
}

/* Whether a free block's work on a second stream may still be running. A capturing thread may
 * not ask CUDA (an event query breaks its capture): to it, such a block is still busy. */
static bool still_pending(block *b)
{
    if (!b->pending) return false;
    if (cnn_cuda_thread_capturing()) return true;
    if (cudaEventQuery(b->ready) != cudaSuccess) {
        (void)cudaGetLastError(); /* not ready: an answer, not an error */
        return true;
    }
    b->pending = false;
    return false;
}

/* Cuts a block taken for `size` bytes after its front: the rest becomes a free block of the
 * same segment, still owned by `owner` (the stream the whole block belonged to). Without host
 * memory for the bookkeeping the block is simply used whole. */
static void split(dev_cache *dc, block *b, size_t size, cudaStream_t owner)
{
    block *r = calloc(1, sizeof *r);
    if (!r) return;
    r->ptr = (char *)b->ptr + size;
    r->size = b->size - size;
    r->stream = owner;
    r->pool = b->pool;
    r->dev = dc;
    r->is_free = true;
    r->seg_prev = b;
    r->seg_next = b->seg_next;
    if (b->seg_next) b->seg_next->seg_prev = r;
    b->seg_next = r;
    b->size = size;
    free_list_insert(dc, r);
}

/* Best fit among the free blocks of `pool` this stream may reuse. A small request takes a block
 * of at most twice its size, whole; a large one takes any larger block and splits off what it
 * leaves. */
block *cnn_cache_take_free(dev_cache *dc, size_t size, cudaStream_t stream, int pool)
{
    for (block *b = dc->free_list; b; b = b->next) {
        if (b->size < size) continue;
        if (size <= SMALL_LIMIT && b->size > 2 * size) break;
        if (b->pool != pool) continue;
        if ((b->stream != stream && b->stream != NULL) || still_pending(b)) continue;
        cnn_block_list_remove(&dc->free_list, b);
        cudaStream_t owner = b->stream;
        b->stream = stream;
        b->is_free = false;
        if (size > SMALL_LIMIT && b->size - size >= LARGE_ROUND) split(dc, b, size, owner);
        return b;
    }
    return NULL;
}

/* Gives the event of a block that is going away to the block absorbing it, or destroys it. */
static void absorb_event(block *into, block *gone)
{
    if (!gone->ready) return;
    if (!into->ready) into->ready = gone->ready;
    else (void)cudaEventDestroy(gone->ready);
}

/* Whether free block b may absorb its segment neighbour n: n is free, no other stream still
 * uses it, and both belong to one stream, or one of them to none (its stream was drained and
 * destroyed: none of its work can still run, so the other's owner may own the whole). */
static bool mergeable(const block *b, block *n)
{
    return n && n->is_free && (n->stream == b->stream || !n->stream || !b->stream) &&
           !still_pending(n);
}

/* Merges a block being freed (not yet in the free list) with the free neighbours of its
 * segment it may absorb (mergeable). Returns the merged block. */
static block *merge_free_neighbours(dev_cache *dc, block *b)
{
    block *n = b->seg_next, *p = b->seg_prev;
    if (mergeable(b, n)) {
        cnn_block_list_remove(&dc->free_list, n);
        b->size += n->size;
        b->seg_next = n->seg_next;
        if (n->seg_next) n->seg_next->seg_prev = b;
        if (!b->stream) b->stream = n->stream;
        absorb_event(b, n);
        free(n);
    }
    if (mergeable(b, p)) {
        cnn_block_list_remove(&dc->free_list, p);
        p->size += b->size;
        p->seg_next = b->seg_next;
        if (b->seg_next) b->seg_next->seg_prev = p;
        if (!p->stream) p->stream = b->stream;
        absorb_event(p, b);
        free(b);
        b = p;
    }
    return b;
}

/* Merges the free blocks that cnn_cache_return had to leave apart because a second stream's
 * work on one of them had not completed at its release: once that work is done they merge like any
 * others, so their segment can go back to CUDA whole. */
void cnn_cache_coalesce(dev_cache *dc)
{
again:
    for (block *b = dc->free_list; b; b = b->next) {
        if (still_pending(b) || !(mergeable(b, b->seg_prev) || mergeable(b, b->seg_next)))
            continue;
        cnn_block_list_remove(&dc->free_list, b);
        free_list_insert(dc, merge_free_neighbours(dc, b));
        goto again; /* the list changed under the walk; each merge leaves one block fewer */
    }
}

size_t cnn_cache_round_size(size_t bytes)
{
    if (bytes <= SMALL_ROUND) return SMALL_ROUND;
    if (bytes <= SMALL_LIMIT) return (bytes + SMALL_ROUND - 1) / SMALL_ROUND * SMALL_ROUND;
    return (bytes + LARGE_ROUND - 1) / LARGE_ROUND * LARGE_ROUND;
}

/* Puts a released block back in the cache (b is in no list). */
void cnn_cache_return(block *b)
{
    if (b->use_stream) {
        /* The event must belong to the block's device, whichever device this thread is on. */
        int prev = -1;
        (void)cudaGetDevice(&prev);
        cudaError_t e = cudaSetDevice(b->dev->device);
        if (e == cudaSuccess && !b->ready)
            e = cudaEventCreateWithFlags(&b->ready, cudaEventDisableTiming);
        if (e == cudaSuccess) e = cudaEventRecord(b->ready, b->use_stream);
        b->pending = e == cudaSuccess;
        /* No event to wait on: wait for the stream itself rather than risk a reuse under it. */
        if (e != cudaSuccess) (void)cudaStreamSynchronize(b->use_stream);
        if (prev >= 0 && prev != b->dev->device) (void)cudaSetDevice(prev);
        (void)cudaGetLastError();
        b->use_stream = NULL;
    }
    dev_cache *dc = b->dev;
    b->is_free = true;
    if (!b->pending) b = merge_free_neighbours(dc, b);
    free_list_insert(dc, b);
}
