/* Symbol visibility for the shared libraries. Both libraries are built with hidden visibility;
 * only what carries CONTRASTIVE_API is exported. Usable from C and C++. */
#ifndef CONTRASTIVE_EXPORT_H_
#define CONTRASTIVE_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define CONTRASTIVE_API __attribute__((visibility("default")))
#else
#define CONTRASTIVE_API
#endif

#endif /* CONTRASTIVE_EXPORT_H_ */
