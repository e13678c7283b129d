package dev.flotilla.images;

import dev.flotilla.images.blob.BlobStore;
import dev.flotilla.images.layout.ImageImporter;
import dev.flotilla.images.oci.Descriptor;
import dev.flotilla.images.oci.Manifest;
import dev.flotilla.images.registry.RegistryClient;
import dev.flotilla.images.shared.SharedImages;
import dev.flotilla.images.unpack.LayerUnpacker;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The node's images: pull, import, list, resolve, delete, and the unpacked layers of one image
 * as overlayfs lower directories.
 *
 * <p>Ownership: an image a tenant imported, or pulled with its own credentials, belongs to that
 * tenant; a pull without credentials of its own is shared by all tenants ({@code owner ""}). To
 * {@link #list} and {@link #resolve}, another tenant's image does not exist. Names are per owner:
 * a tenant's {@code myapp:1} shadows a shared {@code myapp:1} for that tenant only.
 *
 * <p>Disk: beyond {@code cache-max} blob bytes, least-recently-used images whose manifest digest
 * is not in the {@code inUse} set are evicted, with their blobs and layer directories unless
 * another image still uses them. Pulls, imports and unpacks hold a shared lock; collection
 * runs only when none is in flight (the last one to finish runs it), so it never takes a blob
 * from under a pull.
 */
public final class ImageStore {
  private static final Logger log = LoggerFactory.getLogger(ImageStore.class);

  /** The owner of shared images (public pulls, node-imported images). */
  public static final String SHARED = Catalog.SHARED;

  private final ImagesConfig config;
  private final Supplier<Set<Digest>> inUse;
  private final Executor executor;
  private final BlobStore blobs;
  private final LayerUnpacker unpacker;
  private final RegistryClient registry;
  private final ImageImporter importer;
  private final Catalog catalog;
  private final ReentrantReadWriteLock gcLock = new ReentrantReadWriteLock();
  private final Map<String, CompletableFuture<ResolvedImage>> pulls = new ConcurrentHashMap<>();
  private final Map<Digest, Optional<Instant>> createdByConfig = new ConcurrentHashMap<>();
  private final ImageCollector collector;
  private final Map<Digest, Object> fetching = new ConcurrentHashMap<>(); // one fetch per manifest at a time
  private volatile SharedImages shared; // null: this node's images are its own

  /**
   * @param inUse manifest digests of images that must not be evicted (those sandboxes run or pin)
   * @param executor runs pulls (blocking network and disk I/O)
   */
  public ImageStore(ImagesConfig config, Supplier<Set<Digest>> inUse, Executor executor) {
    this.config = config;
    this.inUse = inUse;
    this.executor = executor;
    this.blobs = new BlobStore(config.root());
    this.unpacker = new LayerUnpacker(config.root(), blobs, config.maxLayerBytes(), config.maxLayerEntries());
    this.registry = new RegistryClient(config.registry());
    this.importer = new ImageImporter(blobs, config.registry().maxManifestBytes());
    this.catalog = Catalog.load(config.root().resolve("catalog.json"));
    this.collector = new ImageCollector(catalog, blobs, unpacker, config.cacheMaxBytes());
  }

  /**
   * Imports from now on are also written to {@code store} (and acknowledged only once they are
   * there); their names live there, so every node that shares it sees them. An image this node
   * does not have is fetched from it on first use, verified blob by blob.
   */
  public void share(SharedImages store) {
    this.shared = store;
  }

  public Optional<SharedImages> shared() {
    return Optional.ofNullable(shared);
  }

  public BlobStore blobs() {
    return blobs;
  }

  public LayerUnpacker unpacker() {
    return unpacker;
  }

  public RegistryClient registry() {
    return registry;
  }

  /**
   * Pulls {@code ref} (or finds it here). Concurrent pulls of one reference in one ownership
   * scope share one download.
   *
   * @param credentials the tenant's own; with them the image belongs to {@code owner}, without
   *     them it is shared (and the registry's configured credentials, if any, are used)
   */
  public CompletableFuture<ResolvedImage> pull(ImageReference ref, Optional<Credentials> credentials, String owner) {
    Objects.requireNonNull(owner, "owner (\"\" for shared)");
    String scope = credentials.isPresent() ? owner : SHARED;
    String key = scope + "\u0000" + ref;
    CompletableFuture<ResolvedImage> mine = new CompletableFuture<>();
    CompletableFuture<ResolvedImage> running = pulls.putIfAbsent(key, mine);
    if (running != null) {
      return running;
    }
    try {
      executor.execute(() -> {
        try {
          mine.complete(pullNow(ref, credentials.orElse(null), scope));
        } catch (Throwable t) {
          mine.completeExceptionally(t);
        } finally {
          pulls.remove(key, mine);
        }
        maybeCollect();
      });
    } catch (RuntimeException e) {
      pulls.remove(key, mine);
      mine.completeExceptionally(e);
    }
    return mine;
  }

  private ResolvedImage pullNow(ImageReference ref, Credentials credentials, String scope) {
    gcLock.readLock().lock();
    try {
      if (ref.digest() != null) {
        // A digest names bytes: if the caller may already see them here, the registry has nothing to add.
        synchronized (this) {
          Catalog.Entry e = entry(ref.digest());
          if (e != null && e.visibleTo(scope)) {
            e.owners.add(scope);
            nameIt(ref, scope, e.manifest);
            e.lastUsed = System.currentTimeMillis();
            catalog.save();
            return resolved(Optional.of(ref), e);
          }
        }
      }
      RegistryClient.Pulled p = registry.pull(ref, credentials, blobs);
      ImageConfig cfg = ImageConfig.parse(blobs.read(p.manifest().config().digest(), config.registry().maxManifestBytes()));
      checkLayers(ref.toString(), p.manifest(), cfg);
      synchronized (this) {
        Catalog.Entry e = commit(p.manifestDigest(), p.manifest(), scope);
        nameIt(ref, scope, e.manifest);
        if (p.indexDigest() != null) {
          catalog.aliases.put(p.indexDigest(), p.manifestDigest());
        }
        catalog.save();
        log.info("pulled {} as {} ({} bytes, owner '{}')", ref, p.manifestDigest().shortHex(), e.size, scope);
        return resolved(Optional.of(ref), e);
      }
    } finally {
      gcLock.readLock().unlock();
    }
  }

  /** Imports an OCI layout or docker-save archive (directory or tar); it belongs to {@code owner}. */
  public ResolvedImage importArchive(Path archive, Optional<String> name, String owner) {
    Objects.requireNonNull(owner, "owner (\"\" for shared)");
    ResolvedImage r;
    gcLock.readLock().lock();
    try {
      ImageImporter.Imported imp = importer.importArchive(archive, name);
      ImageConfig cfg = ImageConfig.parse(blobs.read(imp.manifest().config().digest(), config.registry().maxManifestBytes()));
      checkLayers(archive.toString(), imp.manifest(), cfg);
      SharedImages sh = shared;
      if (sh != null) {
        // Before the local commit: an import is acknowledged only once every node can have it.
        sh.publish(owner, imp.name().toString(), imp.manifestDigest(), blobsOf(imp.manifestDigest(), imp.manifest()),
            blobs.size(imp.manifestDigest()) + imp.manifest().totalSize(), blobs);
      }
      synchronized (this) {
        Catalog.Entry e = commit(imp.manifestDigest(), imp.manifest(), owner);
        if (sh == null) {
          catalog.putName(owner, imp.name().toString(), e.manifest);
        } else {
          e.shared = true; // its name lives in the shared store
          catalog.names.removeIf(n -> n.owner().equals(owner) && n.name().equals(imp.name().toString()));
        }
        catalog.save();
        log.info("imported {} from {} as {} (owner '{}')", imp.name(), archive, e.manifest.shortHex(), owner);
        r = resolved(Optional.of(imp.name()), e);
      }
    } finally {
      gcLock.readLock().unlock();
    }
    maybeCollect();
    return r;
  }

  /**
   * Names {@code tenant} can see (its own shadow shared ones), then images nobody named (pulled by
   * digest). With a shared store, the names of imported images come from there.
   */
  public List<ImageSummary> list(String tenant) {
    SharedImages sh = shared;
    List<SharedImages.Named> rows = sh == null ? List.of() : sh.list(tenant);
    synchronized (this) {
      List<ImageSummary> out = new ArrayList<>();
      Set<Digest> named = new HashSet<>();
      Set<String> own = new HashSet<>();
      for (SharedImages.Named r : rows) {
        if (r.owner().equals(tenant)) own.add(r.name());
      }
      for (Catalog.Name n : catalog.names) {
        if (n.owner().equals(tenant)) {
          own.add(n.name());
        }
      }
      for (SharedImages.Named r : rows) {
        if (!r.owner().equals(tenant) && own.contains(r.name())) continue;
        Catalog.Entry e = catalog.images.get(r.manifest());
        named.add(r.manifest());
        out.add(new ImageSummary(r.name(), r.manifest(), r.size(), r.owner(),
            e == null ? null : Instant.ofEpochMilli(e.lastUsed), e == null ? null : created(e)));
      }
      for (Catalog.Name n : catalog.names) {
        boolean visible = n.owner().equals(tenant) || (n.owner().equals(SHARED) && !own.contains(n.name()));
        Catalog.Entry e = catalog.images.get(n.digest());
        if (visible && e != null) {
          named.add(e.manifest);
          out.add(new ImageSummary(n.name(), e.manifest, e.size, n.owner(), Instant.ofEpochMilli(e.lastUsed), created(e)));
        }
      }
      for (Catalog.Name n : catalog.names) {
        named.add(n.digest());
      }
      for (Catalog.Entry e : catalog.images.values()) {
        // A shared image's names are in the shared store: one it has none of there is not listed.
        if (!named.contains(e.manifest) && e.visibleTo(tenant) && !(sh != null && e.shared)) {
          out.add(new ImageSummary(null, e.manifest, e.size, e.owners.contains(tenant) ? tenant : SHARED,
              Instant.ofEpochMilli(e.lastUsed), created(e)));
        }
      }
      out.sort(Comparator.comparing((ImageSummary s) -> s.name() == null ? "~" : s.name()).thenComparing(ImageSummary::manifestDigest));
      return out;
    }
  }

  /**
   * The image {@code refOrDigest} ({@code busybox}, {@code host/repo:tag}, {@code repo@sha256:..}
   * or {@code sha256:..}) means to {@code tenant}; empty when there is none it can see.
   */
  public Optional<ResolvedImage> resolve(String refOrDigest, String tenant) {
    Optional<ImageReference> ref = Optional.empty();
    Digest digest;
    if (Digest.isDigest(refOrDigest)) {
      digest = Digest.parse(refOrDigest);
    } else {
      ImageReference r = ImageReference.parse(refOrDigest);
      ref = Optional.of(r);
      digest = r.digest();
    }
    SharedImages sh = shared;
    if (sh != null && digest == null) {
      // The tenant's own imported names live in the shared store and shadow any other.
      Optional<Digest> named = sh.lookup(tenant, ref.get().toString());
      if (named.isPresent()) {
        return Optional.of(fromShared(sh, named.get(), ref, tenant));
      }
    }
    Optional<ResolvedImage> local = resolveLocal(ref, digest, tenant);
    if (local.isPresent() || sh == null || digest == null || !sh.visible(tenant, digest)) {
      return local;
    }
    return Optional.of(fromShared(sh, digest, ref, tenant));
  }

  private Optional<ResolvedImage> resolveLocal(Optional<ImageReference> ref, Digest digest, String tenant) {
    gcLock.readLock().lock();
    try {
      synchronized (this) {
        Catalog.Entry e;
        if (digest != null) {
          e = entry(digest);
        } else {
          Digest d = catalog.lookup(ref.get().toString(), tenant);
          e = d == null ? null : catalog.images.get(d);
        }
        if (e == null || !e.visibleTo(tenant)) {
          return Optional.empty();
        }
        e.lastUsed = System.currentTimeMillis();
        return Optional.of(resolved(ref, e));
      }
    } finally {
      gcLock.readLock().unlock();
    }
  }

  /**
   * The shared store's image {@code manifest}, which {@code tenant} may use: from this node's
   * store if it is here, else fetched blob by blob (each verified against its digest and the
   * manifest's size before it is kept; on any failure the blobs this fetch added are dropped
   * again and nothing is recorded).
   */
  private ResolvedImage fromShared(SharedImages sh, Digest manifest, Optional<ImageReference> ref, String tenant) {
    gcLock.readLock().lock();
    try {
      synchronized (fetching.computeIfAbsent(manifest, k -> new Object())) {
        synchronized (this) {
          Catalog.Entry e = catalog.images.get(manifest);
          if (e != null && blobs.contains(e.manifest) && blobs.contains(e.config)) {
            e.owners.add(tenant);
            e.shared = true;
            e.lastUsed = System.currentTimeMillis();
            catalog.save();
            return resolved(ref, e);
          }
        }
        long start = System.nanoTime();
        long maxMeta = config.registry().maxManifestBytes();
        List<Digest> added = new ArrayList<>();
        try {
          fetchBlob(sh, manifest, -1, maxMeta, added);
          Manifest m = Manifest.parse(blobs.read(manifest, maxMeta));
          fetchBlob(sh, m.config().digest(), m.config().size(), maxMeta, added);
          ImageConfig cfg = ImageConfig.parse(blobs.read(m.config().digest(), maxMeta));
          checkLayers(manifest.toString(), m, cfg);
          for (Descriptor layer : m.layers()) {
            fetchBlob(sh, layer.digest(), layer.size(), Long.MAX_VALUE, added);
          }
          synchronized (this) {
            Catalog.Entry e = commit(manifest, m, tenant);
            e.shared = true;
            catalog.save();
            log.info("fetched {} from the shared store for '{}' ({} blobs new here, {} bytes) in {} ms", manifest.shortHex(),
                tenant, added.size(), e.size, (System.nanoTime() - start) / 1_000_000);
            return resolved(ref, e);
          }
        } catch (RuntimeException failed) {
          for (Digest d : added) {
            blobs.delete(d);
          }
          throw failed;
        }
      }
    } finally {
      gcLock.readLock().unlock();
    }
  }

  private void fetchBlob(SharedImages sh, Digest d, long size, long max, List<Digest> added) {
    if (!blobs.contains(d)) {
      sh.fetch(d, size, max, blobs);
      added.add(d);
    }
  }

  /**
   * Removes {@code tenant}'s name {@code ref} (or, for a digest, every name of it and the
   * tenant's claim on it). An image nobody claims any more goes at the next collection unless it
   * is in use. Shared names can only be deleted by the shared owner ("").
   *
   * @return false when {@code tenant} has no such name or image
   */
  public boolean delete(String ref, String tenant) {
    boolean removed = false;
    SharedImages sh = shared;
    if (sh != null) {
      Set<Digest> gone = Digest.isDigest(ref)
          ? sh.delete(tenant, null, Digest.parse(ref))
          : sh.delete(tenant, ImageReference.parse(ref).toString(), null);
      for (Digest d : gone) {
        if (!sh.named(tenant, d)) {
          synchronized (this) {
            Catalog.Entry e = catalog.images.get(d);
            if (e != null && e.shared && catalog.names.stream().noneMatch(m -> m.owner().equals(tenant) && m.digest().equals(d))) {
              e.owners.remove(tenant);
              catalog.save();
            }
          }
        }
      }
      removed = !gone.isEmpty();
    }
    removed |= deleteLocal(ref, tenant);
    maybeCollect();
    return removed;
  }

  private synchronized boolean deleteLocal(String ref, String tenant) {
    Digest target;
    if (Digest.isDigest(ref)) {
      Catalog.Entry e = entry(Digest.parse(ref));
      if (e == null || !e.owners.contains(tenant)) {
        return false;
      }
      target = e.manifest;
      catalog.names.removeIf(n -> n.owner().equals(tenant) && n.digest().equals(target));
    } else {
      String name = ImageReference.parse(ref).toString();
      Optional<Catalog.Name> n = catalog.names.stream()
          .filter(m -> m.owner().equals(tenant) && m.name().equals(name)).findFirst();
      if (n.isEmpty()) {
        return false;
      }
      target = n.get().digest();
      catalog.names.remove(n.get());
    }
    Catalog.Entry e = catalog.images.get(target);
    if (e != null && catalog.names.stream().noneMatch(m -> m.owner().equals(tenant) && m.digest().equals(target))) {
      e.owners.remove(tenant);
    }
    catalog.save();
    return true;
  }

  /**
   * The image's layers unpacked (on demand, once per node), top layer first, as overlayfs wants
   * its {@code lowerdir} list.
   */
  public List<Path> layerDirs(Digest manifestDigest) {
    gcLock.readLock().lock();
    try {
      Catalog.Entry e;
      synchronized (this) {
        e = entry(manifestDigest);
        if (e == null) {
          throw new ImageException.NotFound("image " + manifestDigest + " is not on this node");
        }
        e.lastUsed = System.currentTimeMillis();
      }
      ImageConfig cfg = ImageConfig.parse(blobs.read(e.config, config.registry().maxManifestBytes()));
      List<Path> dirs = new ArrayList<>();
      for (int i = e.layers.size() - 1; i >= 0; i--) {
        dirs.add(unpacker.unpack(e.layers.get(i), cfg.diffIds().get(i)));
      }
      return dirs;
    } finally {
      gcLock.readLock().unlock();
    }
  }

  /** Blob bytes of the images in the catalog. */
  public synchronized long diskUsage() {
    return catalog.images.values().stream().mapToLong(x -> x.size).sum();
  }

  /**
   * Drops unclaimed images not in use, evicts least-recently-used ones not in use (nor used within
   * {@code eviction-grace}) while over {@code cache-max}, then removes blobs and layer directories no remaining image references.
   * Does nothing (and returns false) while a pull, import or unpack is in flight: the last of
   * those runs it when it ends.
   */
  public boolean collectGarbage() {
    if (!gcLock.writeLock().tryLock()) {
      return false;
    }
    try {
      Set<Digest> busy = inUse.get();
      synchronized (this) {
        collector.collect(busy, System.currentTimeMillis() - config.evictionGrace().toMillis());
      }
      return true;
    } finally {
      gcLock.writeLock().unlock();
    }
  }

  private void maybeCollect() {
    try {
      collectGarbage();
    } catch (RuntimeException e) {
      log.warn("image garbage collection failed: {}", e.toString());
    }
  }

  /** The config's {@code created}, read once per config (a blob never changes under its digest). */
  private Instant created(Catalog.Entry e) {
    return createdByConfig.computeIfAbsent(e.config, c -> {
      try {
        return Optional.ofNullable(ImageConfig.parse(blobs.read(c, config.registry().maxManifestBytes())).created());
      } catch (RuntimeException unreadable) {
        return Optional.empty();
      }
    }).orElse(null);
  }

  private Catalog.Entry entry(Digest d) {
    Catalog.Entry e = catalog.images.get(d);
    if (e == null && catalog.aliases.containsKey(d)) {
      e = catalog.images.get(catalog.aliases.get(d));
    }
    return e;
  }

  private Catalog.Entry commit(Digest manifestDigest, Manifest m, String owner) {
    Catalog.Entry e = catalog.images.get(manifestDigest);
    if (e == null) {
      e = new Catalog.Entry(manifestDigest, m.config().digest(),
          m.layers().stream().map(l -> l.digest()).toList(), blobs.size(manifestDigest) + m.totalSize(), 0);
      catalog.images.put(manifestDigest, e);
    }
    e.owners.add(owner);
    e.lastUsed = System.currentTimeMillis();
    return e;
  }

  private void nameIt(ImageReference ref, String owner, Digest d) {
    // Only a pull by tag says where the tag points now. A pull of repo:tag@digest (a pinned
    // sandbox starting on a node that lacks it) must not point the node's tag back at old bytes.
    if (ref.tag() != null && ref.digest() == null) {
      catalog.putName(owner, ref.withoutDigest().toString(), d);
    }
  }

  private List<SharedImages.Blob> blobsOf(Digest manifestDigest, Manifest m) {
    List<SharedImages.Blob> out = new ArrayList<>();
    out.add(new SharedImages.Blob(manifestDigest, blobs.size(manifestDigest)));
    out.add(new SharedImages.Blob(m.config().digest(), m.config().size()));
    for (Descriptor l : m.layers()) {
      out.add(new SharedImages.Blob(l.digest(), l.size()));
    }
    return out;
  }

  private static void checkLayers(String what, Manifest m, ImageConfig cfg) {
    if (cfg.diffIds().size() != m.layers().size()) {
      throw new ImageException(what + ": the manifest has " + m.layers().size() + " layers but the config lists "
          + cfg.diffIds().size() + " diff_ids; refused");
    }
  }

  private ResolvedImage resolved(Optional<ImageReference> ref, Catalog.Entry e) {
    ImageConfig cfg = ImageConfig.parse(blobs.read(e.config, config.registry().maxManifestBytes()));
    return new ResolvedImage(ref, e.manifest, e.config, cfg, e.layers, e.size);
  }
}
