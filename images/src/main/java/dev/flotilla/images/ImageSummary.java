package dev.flotilla.images;

import java.time.Instant;

/**
 * One line of {@link ImageStore#list}: a name visible to the caller, or an unnamed image (pulled or
 * kept by digest only), with what it costs on disk.
 *
 * @param name canonical {@code domain/repo:tag}, or null for an image known by digest only
 * @param owner the tenant it belongs to, or "" for an image shared by every tenant
 * @param created when the image was built (its config's {@code created}), or null
 */
public record ImageSummary(String name, Digest manifestDigest, long size, String owner, Instant lastUsed, Instant created) {}
