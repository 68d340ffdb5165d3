/* vMotion stream records: pure encoders and validating decoders. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmotion/stream.h"

/* Fixed parts of record bodies. */
#define HDR_FIXED 40u /* magic .. reserved */
#define CPUID_ENTRY 24u
#define PAGES_FIXED 16u /* first, count, flags */
#define PAGES_ZERO 1u /* flags: a run of zero pages, no data */
#define ROUND_SIZE 48u
#define END_SIZE 16u
#define VERDICT_FIXED 8u /* ok, reason length */
#define STARTED_SIZE 8u

static void put32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

uint32_t mig_rec_max(uint32_t type)
{
	switch (type) {
	case MIG_REC_HEADER:
		return MIG_MAX_HEADER;
	case MIG_REC_HEADER_REPLY:
	case MIG_REC_ACK:
		return VERDICT_FIXED + MIG_MAX_REASON;
	case MIG_REC_PAGES:
		return PAGES_FIXED + MIG_MAX_RUN * MIG_PAGE_SIZE;
	case MIG_REC_ROUND_END:
		return ROUND_SIZE;
	case MIG_REC_STATE:
		return MIG_NAME_LEN + MIG_MAX_STATE;
	case MIG_REC_END:
		return END_SIZE;
	case MIG_REC_COMMIT:
		return 0;
	case MIG_REC_STARTED:
		return STARTED_SIZE;
	default:
		return 0;
	}
}

const char *mig_rec_name(uint32_t type)
{
	static const char *const names[] = {
		[MIG_REC_HEADER] = "header",
		[MIG_REC_HEADER_REPLY] = "reply",
		[MIG_REC_PAGES] = "pages",
		[MIG_REC_ROUND_END] = "round-end",
		[MIG_REC_STATE] = "state",
		[MIG_REC_END] = "end",
		[MIG_REC_ACK] = "ack",
		[MIG_REC_COMMIT] = "commit",
		[MIG_REC_STARTED] = "started",
	};

	return type < sizeof(names) / sizeof(names[0]) && names[type] ?
		       names[type] :
		       "unknown";
}

int mig_rec_head_decode(const uint8_t *p, size_t n, struct mig_rec *out)
{
	if (n < MIG_REC_HEAD)
		return -EAGAIN;
	out->type = get32(p);
	out->len = get32(p + 4);
	out->body = p + MIG_REC_HEAD;
	if (out->type < MIG_REC_HEADER || out->type > MIG_REC_STARTED)
		return -EPROTO;
	if (out->len > mig_rec_max(out->type))
		return -EMSGSIZE;
	return 0;
}

int mig_rec_head_put(struct buf *b, uint32_t type, uint32_t len)
{
	uint8_t h[MIG_REC_HEAD];

	put32(h, type);
	put32(h + 4, len);
	return buf_append(b, h, sizeof(h));
}

int mig_header_encode(struct buf *b, const struct mig_header *h)
{
	size_t dl = strlen(h->devices) + 1;
	uint8_t f[HDR_FIXED], e[CPUID_ENTRY];
	uint32_t len = HDR_FIXED + h->ncpuid * CPUID_ENTRY + (uint32_t)dl;
	int rc;

	if (h->ncpuid > MIG_MAX_CPUID || dl > MIG_MAX_DEVICES)
		return -E2BIG;
	memcpy(f, MIG_MAGIC, 8);
	put32(f + 8, h->version);
	put32(f + 12, h->page_size);
	put64(f + 16, h->mem_bytes);
	put32(f + 24, h->cpus);
	put32(f + 28, h->ncpuid);
	put32(f + 32, (uint32_t)dl);
	put32(f + 36, 0);
	rc = mig_rec_head_put(b, MIG_REC_HEADER, len) ?:
		     buf_append(b, f, sizeof(f));
	for (uint32_t i = 0; rc == 0 && i < h->ncpuid; i++) {
		const struct mig_cpuid *c = &h->cpuid[i];

		put32(e, c->function);
		put32(e + 4, c->index);
		put32(e + 8, c->eax);
		put32(e + 12, c->ebx);
		put32(e + 16, c->ecx);
		put32(e + 20, c->edx);
		rc = buf_append(b, e, sizeof(e));
	}
	return rc ?: buf_append(b, h->devices, dl);
}

int mig_header_decode(const struct mig_rec *r, struct mig_header *h)
{
	const uint8_t *p = r->body;
	uint32_t dl;

	if (r->type != MIG_REC_HEADER || r->len < HDR_FIXED)
		return -EINVAL;
	if (memcmp(p, MIG_MAGIC, 8) != 0)
		return -EPROTO;
	h->version = get32(p + 8);
	if (h->version != MIG_VERSION)
		return -EPROTONOSUPPORT;
	h->page_size = get32(p + 12);
	h->mem_bytes = get64(p + 16);
	h->cpus = get32(p + 24);
	h->ncpuid = get32(p + 28);
	dl = get32(p + 32);
	if (h->ncpuid > MIG_MAX_CPUID || dl == 0 || dl > MIG_MAX_DEVICES ||
	    r->len != HDR_FIXED + h->ncpuid * CPUID_ENTRY + dl)
		return -EINVAL;
	p += HDR_FIXED;
	for (uint32_t i = 0; i < h->ncpuid; i++, p += CPUID_ENTRY) {
		h->cpuid[i] = (struct mig_cpuid){
			.function = get32(p),
			.index = get32(p + 4),
			.eax = get32(p + 8),
			.ebx = get32(p + 12),
			.ecx = get32(p + 16),
			.edx = get32(p + 20),
		};
	}
	/* One NUL, at the end. */
	if (memchr(p, 0, dl) != p + dl - 1)
		return -EINVAL;
	h->devices = (const char *)p;
	return 0;
}

/* Feature registers compared between hosts (MIG_CPU_FEATS, in order):
 * the source's bits must all be there on the destination. ignore: bits
 * canopy-vmm sets or clears itself (hypervisor, HTT, VMX, SMX, SVM,
 * OSXSAVE, which follows CR4). */
static const struct feat {
	uint32_t function, index;
	unsigned reg; /* 0 eax .. 3 edx */
	uint32_t ignore;
	const char *name;
} feats[MIG_CPU_FEATS] = {
	{ 1, 0, 2, (1u << 31) | (1u << 27) | (1u << 5) | (1u << 6), "1.ecx" },
	{ 1, 0, 3, 1u << 28, "1.edx" },
	{ 7, 0, 1, 0, "7.0.ebx" },
	{ 7, 0, 2, 0, "7.0.ecx" },
	{ 7, 0, 3, 0, "7.0.edx" },
	{ 0xd, 1, 0, 0, "0xd.1.eax" },
	{ 0x80000001u, 0, 2, 1u << 2, "0x80000001.ecx" },
	{ 0x80000001u, 0, 3, 0, "0x80000001.edx" },
};

static uint32_t reg_of(const struct mig_cpuid *c, unsigned reg)
{
	const uint32_t r[4] = { c->eax, c->ebx, c->ecx, c->edx };

	return r[reg];
}

void mig_cpu_features(const struct mig_cpuid *set, unsigned n,
		      uint32_t out[MIG_CPU_FEATS])
{
	for (unsigned f = 0; f < MIG_CPU_FEATS; f++) {
		out[f] = 0;
		for (unsigned i = 0; i < n; i++)
			if (set[i].function == feats[f].function &&
			    set[i].index == feats[f].index) {
				out[f] = reg_of(&set[i], feats[f].reg) &
					 ~feats[f].ignore;
				break;
			}
	}
}

int mig_cpu_features_missing(const uint32_t need[MIG_CPU_FEATS],
			     const uint32_t have[MIG_CPU_FEATS], char *why,
			     size_t whylen)
{
	for (unsigned f = 0; f < MIG_CPU_FEATS; f++) {
		uint32_t lack = need[f] & ~have[f] & ~feats[f].ignore;

		if (lack) {
			snprintf(why, whylen, "CPUID %s bits 0x%08x",
				 feats[f].name, lack);
			return -EINVAL;
		}
	}
	return 0;
}

static int check_cpuid(const struct mig_header *src,
		       const struct mig_cpuid *sup, unsigned nsup, char *why,
		       size_t whylen)
{
	uint32_t need[MIG_CPU_FEATS], have[MIG_CPU_FEATS];
	char bits[64];

	mig_cpu_features(src->cpuid, src->ncpuid, need);
	mig_cpu_features(sup, nsup, have);
	if (mig_cpu_features_missing(need, have, bits, sizeof(bits)) == 0)
		return 0;
	snprintf(why, whylen, "this host's CPU lacks features the VM uses: %s",
		 bits);
	return -EINVAL;
}

int mig_header_check(const struct mig_header *src,
		     const struct mig_header *local,
		     const struct mig_cpuid *sup, unsigned nsup, char *why,
		     size_t whylen)
{
	if (src->page_size != MIG_PAGE_SIZE) {
		snprintf(why, whylen, "page size %u, expected %u",
			 src->page_size, MIG_PAGE_SIZE);
		return -EINVAL;
	}
	if (src->mem_bytes != local->mem_bytes) {
		snprintf(why, whylen,
			 "memory size differs: the VM has %llu MiB, the "
			 "destination was started with %llu MiB",
			 (unsigned long long)(src->mem_bytes >> 20),
			 (unsigned long long)(local->mem_bytes >> 20));
		return -EINVAL;
	}
	if (src->cpus != local->cpus) {
		snprintf(why, whylen,
			 "vCPU count differs: the VM has %u, the destination "
			 "was started with %u",
			 src->cpus, local->cpus);
		return -EINVAL;
	}
	if (strcmp(src->devices, local->devices) != 0) {
		snprintf(why, whylen,
			 "devices differ: the VM has [%.80s], the destination "
			 "has [%.80s]",
			 src->devices, local->devices);
		return -EINVAL;
	}
	return check_cpuid(src, sup, nsup, why, whylen);
}

int mig_pages_put(struct buf *b, uint64_t first, uint32_t count, int zero)
{
	uint8_t f[PAGES_FIXED];
	uint32_t len = PAGES_FIXED + (zero ? 0 : count * MIG_PAGE_SIZE);

	if (count == 0 || count > MIG_MAX_RUN)
		return -EINVAL;
	put64(f, first);
	put32(f + 8, count);
	put32(f + 12, zero ? PAGES_ZERO : 0);
	return mig_rec_head_put(b, MIG_REC_PAGES, len) ?:
		       buf_append(b, f, sizeof(f));
}

int mig_pages_decode(const struct mig_rec *r, uint64_t ram_pages,
		     struct mig_pages *out)
{
	uint32_t flags;

	if (r->type != MIG_REC_PAGES || r->len < PAGES_FIXED)
		return -EINVAL;
	out->first = get64(r->body);
	out->count = get32(r->body + 8);
	flags = get32(r->body + 12);
	if (out->count == 0 || out->count > MIG_MAX_RUN || flags & ~PAGES_ZERO)
		return -EINVAL;
	out->zero = flags & PAGES_ZERO;
	if (r->len !=
	    PAGES_FIXED + (out->zero ? 0 : out->count * MIG_PAGE_SIZE))
		return -EINVAL;
	if (out->first > ram_pages || out->count > ram_pages - out->first)
		return -ERANGE;
	out->data = out->zero ? NULL : r->body + PAGES_FIXED;
	return 0;
}

int mig_round_encode(struct buf *b, const struct mig_round *rd)
{
	uint8_t f[ROUND_SIZE];

	put32(f, rd->round);
	put32(f + 4, 0);
	put64(f + 8, rd->pages);
	put64(f + 16, rd->zero_pages);
	put64(f + 24, rd->bytes);
	put64(f + 32, rd->duration_us);
	put64(f + 40, rd->dirty_pages);
	return mig_rec_head_put(b, MIG_REC_ROUND_END, sizeof(f)) ?:
		       buf_append(b, f, sizeof(f));
}

int mig_round_decode(const struct mig_rec *r, struct mig_round *out)
{
	const uint8_t *p = r->body;

	if (r->type != MIG_REC_ROUND_END || r->len != ROUND_SIZE ||
	    get32(p + 4) != 0)
		return -EINVAL;
	out->round = get32(p);
	out->pages = get64(p + 8);
	out->zero_pages = get64(p + 16);
	out->bytes = get64(p + 24);
	out->duration_us = get64(p + 32);
	out->dirty_pages = get64(p + 40);
	return out->zero_pages <= out->pages ? 0 : -EINVAL;
}

int mig_state_put(struct buf *b, const char *name, uint32_t body_len)
{
	char n[MIG_NAME_LEN] = { 0 };
	size_t l = strlen(name);

	if (l == 0 || l >= MIG_NAME_LEN || body_len > MIG_MAX_STATE)
		return -EINVAL;
	memcpy(n, name, l);
	return mig_rec_head_put(b, MIG_REC_STATE, MIG_NAME_LEN + body_len) ?:
		       buf_append(b, n, sizeof(n));
}

int mig_state_decode(const struct mig_rec *r, const char **name,
		     const uint8_t **body, uint32_t *len)
{
	const uint8_t *nul;

	if (r->type != MIG_REC_STATE || r->len < MIG_NAME_LEN)
		return -EINVAL;
	nul = memchr(r->body, 0, MIG_NAME_LEN);
	if (!nul || nul == r->body)
		return -EINVAL;
	/* Padding after the name is zero. */
	for (const uint8_t *q = nul; q < r->body + MIG_NAME_LEN; q++)
		if (*q)
			return -EINVAL;
	*name = (const char *)r->body;
	*body = r->body + MIG_NAME_LEN;
	*len = r->len - MIG_NAME_LEN;
	return 0;
}

int mig_end_encode(struct buf *b, uint32_t crc, uint64_t bytes)
{
	uint8_t f[END_SIZE];

	put32(f, crc);
	put32(f + 4, 0);
	put64(f + 8, bytes);
	return mig_rec_head_put(b, MIG_REC_END, sizeof(f)) ?:
		       buf_append(b, f, sizeof(f));
}

int mig_end_decode(const struct mig_rec *r, uint32_t *crc, uint64_t *bytes)
{
	if (r->type != MIG_REC_END || r->len != END_SIZE ||
	    get32(r->body + 4) != 0)
		return -EINVAL;
	*crc = get32(r->body);
	*bytes = get64(r->body + 8);
	return 0;
}

int mig_end_verify(const struct mig_rec *r, uint32_t crc, uint64_t bytes)
{
	uint32_t want;
	uint64_t n;
	int rc = mig_end_decode(r, &want, &n);

	if (rc < 0)
		return rc;
	return want == crc && n == bytes ? 0 : -EBADMSG;
}

int mig_verdict_encode(struct buf *b, uint32_t type, int ok, const char *reason)
{
	uint8_t f[VERDICT_FIXED];
	size_t l = reason ? strnlen(reason, MIG_MAX_REASON) : 0;

	if (type != MIG_REC_HEADER_REPLY && type != MIG_REC_ACK)
		return -EINVAL;
	put32(f, ok ? 1 : 0);
	put32(f + 4, (uint32_t)l);
	return mig_rec_head_put(b, type, VERDICT_FIXED + (uint32_t)l) ?:
		       buf_append(b, f, sizeof(f))		      ?:
		       (l ? buf_append(b, reason, l) : 0);
}

int mig_verdict_decode(const struct mig_rec *r, struct mig_verdict *out)
{
	uint32_t ok, l;

	if ((r->type != MIG_REC_HEADER_REPLY && r->type != MIG_REC_ACK) ||
	    r->len < VERDICT_FIXED)
		return -EINVAL;
	ok = get32(r->body);
	l = get32(r->body + 4);
	if (ok > 1 || l >= MIG_MAX_REASON || r->len != VERDICT_FIXED + l)
		return -EINVAL;
	out->ok = (int)ok;
	memcpy(out->reason, r->body + VERDICT_FIXED, l);
	out->reason[l] = 0;
	/* A reason is text: no control bytes reach a log. */
	for (uint32_t i = 0; i < l; i++)
		if ((unsigned char)out->reason[i] < 0x20)
			out->reason[i] = '?';
	return 0;
}

int mig_commit_encode(struct buf *b)
{
	return mig_rec_head_put(b, MIG_REC_COMMIT, 0);
}

int mig_started_encode(struct buf *b, uint64_t resume_us)
{
	uint8_t f[STARTED_SIZE];

	put64(f, resume_us);
	return mig_rec_head_put(b, MIG_REC_STARTED, sizeof(f)) ?:
		       buf_append(b, f, sizeof(f));
}

int mig_started_decode(const struct mig_rec *r, uint64_t *resume_us)
{
	if (r->type != MIG_REC_STARTED || r->len != STARTED_SIZE)
		return -EINVAL;
	*resume_us = get64(r->body);
	return 0;
}

/* Decode the body of r by its type. */
static int check_body(const struct mig_rec *r, uint64_t ram_pages)
{
	struct mig_header h;
	struct mig_pages pg;
	struct mig_round rd;
	struct mig_verdict v;
	const char *name;
	const uint8_t *body;
	uint32_t len, crc;
	uint64_t u;

	switch (r->type) {
	case MIG_REC_HEADER:
		return mig_header_decode(r, &h);
	case MIG_REC_PAGES:
		return mig_pages_decode(r, ram_pages, &pg);
	case MIG_REC_ROUND_END:
		return mig_round_decode(r, &rd);
	case MIG_REC_STATE:
		return mig_state_decode(r, &name, &body, &len);
	case MIG_REC_END:
		return mig_end_decode(r, &crc, &u);
	case MIG_REC_HEADER_REPLY:
	case MIG_REC_ACK:
		return mig_verdict_decode(r, &v);
	case MIG_REC_STARTED:
		return mig_started_decode(r, &u);
	default: /* COMMIT: empty, checked by the head */
		return 0;
	}
}

int mig_rec_check(const uint8_t *p, size_t n, uint64_t ram_pages, size_t *used)
{
	struct mig_rec r;
	int rc = mig_rec_head_decode(p, n, &r);

	if (rc < 0)
		return rc;
	if (n - MIG_REC_HEAD < r.len)
		return -EAGAIN;
	*used = MIG_REC_HEAD + (size_t)r.len;
	return check_body(&r, ram_pages);
}
