/* Test guest: CPL3 runtime: system calls, string functions, formatting. */
#include "guest/user.h"

long user_syscall(long nr, long a1, long a2, long a3)
{
	long ret = nr;

	__asm__ volatile("syscall"
			 : "+a"(ret), "+D"(a1), "+S"(a2), "+d"(a3)
			 :
			 : "rcx", "r8", "r9", "r10", "r11", "memory");
	return ret;
}

void user_write(const char *buf, size_t len)
{
	user_syscall(SYS_WRITE, (long)buf, (long)len, 0);
}

size_t user_read(char *buf, size_t len)
{
	long n = user_syscall(SYS_READ, (long)buf, (long)len, 0);

	return n > 0 ? (size_t)n : 0;
}

void user_exit(int code)
{
	user_syscall(SYS_EXIT, code, 0, 0);
	for (;;)
		user_relax();
}

/* The compiler may call these four itself, even at CPL0 (no SMEP). */
void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep movsb"
			 : "+D"(d), "+S"(src), "+c"(n)
			 :
			 : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + n)
		return memcpy(dst, src, n);
	while (n--)
		d[n] = s[n];
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int user_streq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

int user_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0, base = 10;
	size_t i = 0;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i == len)
		return -1;
	for (; i < len; i++) {
		char c = s[i];
		uint64_t d;

		if (c >= '0' && c <= '9')
			d = (uint64_t)(c - '0');
		else if (base == 16 && (c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (uint64_t)((c | 0x20) - 'a' + 10);
		else
			return -1;
		if (v > (UINT64_MAX - d) / base)
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

/* Output cursor for the formatter: counts what would have been written. */
struct fmt_out {
	char *buf;
	size_t size, len;
};

static void put(struct fmt_out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct fmt_out *o, uint64_t v, unsigned base, int neg,
		    unsigned width, char pad)
{
	char tmp[24];
	unsigned n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (width > n) {
		put(o, pad);
		width--;
	}
	while (n)
		put(o, tmp[--n]);
}

/* Conversions after the '%' and flags: d u x s c p, with l, ll or z. */
static const char *convert(struct fmt_out *o, const char *f, va_list *ap,
			   unsigned width, char pad, int prec)
{
	int lng = 0;
	int64_t sv;

	for (; *f == 'l' || *f == 'z'; f++)
		lng = 1;
	switch (*f) {
	case 'd':
		sv = lng ? va_arg(*ap, int64_t) : va_arg(*ap, int);
		put_num(o, sv < 0 ? 0 - (uint64_t)sv : (uint64_t)sv, 10, sv < 0,
			width, pad);
		break;
	case 'u':
	case 'x':
		put_num(o, lng ? va_arg(*ap, uint64_t) : va_arg(*ap, unsigned),
			*f == 'x' ? 16 : 10, 0, width, pad);
		break;
	case 'p':
		put(o, '0');
		put(o, 'x');
		put_num(o, (uint64_t)va_arg(*ap, void *), 16, 0, width, pad);
		break;
	case 's': {
		const char *s = va_arg(*ap, const char *);

		for (int i = 0; s[i] && (prec < 0 || i < prec); i++)
			put(o, s[i]);
		break;
	}
	case 'c':
		put(o, (char)va_arg(*ap, int));
		break;
	default:
		put(o, '%');
		if (*f)
			put(o, *f);
	}
	return *f ? f + 1 : f;
}

/* A printf subset: %[0][width][.*](d|u|x|s|c|p) with l/ll/z, and %%. */
int user_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct fmt_out o = { buf, size, 0 };
	va_list aq;

	va_copy(aq, ap);
	while (*fmt) {
		unsigned width = 0;
		char pad = ' ';
		int prec = -1;

		if (*fmt != '%' || fmt[1] == '%') {
			put(&o, *fmt);
			fmt += *fmt == '%' ? 2 : 1;
			continue;
		}
		fmt++;
		if (*fmt == '0')
			pad = *fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		if (fmt[0] == '.' && fmt[1] == '*') {
			prec = va_arg(aq, int);
			fmt += 2;
		}
		fmt = convert(&o, fmt, &aq, width, pad, prec);
	}
	va_end(aq);
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return (int)o.len;
}

int user_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = user_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void user_printf(const char *fmt, ...)
{
	char line[USER_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = user_vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	user_write(line, (size_t)n);
}
