package dev.flotilla.images.shared;

import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.blob.BlobStore;
import java.io.IOException;
import java.io.InputStream;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.Semaphore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The cluster's shared store of imported images, in the PostgreSQL database the journal uses:
 * every blob of an imported image (manifest, config, layers) as {@value #CHUNK_BYTES}-byte
 * {@code bytea} chunks, one row per image (its blobs, for collection) and one row per name
 * (owner tenant, name, manifest digest). Plain JDBC over the connections it is given (the
 * journal's pool); no Pekko.
 *
 * <p>What it holds is verified again by whoever fetches it: {@link #fetch} streams a blob into a
 * node's {@link BlobStore}, which checks digest and size before anything is cached. Names and
 * visibility follow the node stores' rules: a tenant sees its own rows and shared ({@code ""})
 * ones; another tenant's image does not exist for it.
 *
 * <p>Concurrency: each blob is written in a transaction of its own (a blob already there is
 * skipped; two nodes writing one blob wait on its key). The name row is committed under a
 * transaction-scoped advisory lock that deletes also take; under it the import checks that every
 * blob is (still) there, so a delete that swept blobs no row referenced yet cannot leave a name
 * pointing at missing bytes. At most one blob transfer per node runs at a time, so images never
 * hold more than one of the journal's pool connections for long.
 */
public final class SharedImages {
  private static final Logger log = LoggerFactory.getLogger(SharedImages.class);

  /** Bytes per chunk row. */
  public static final int CHUNK_BYTES = 1024 * 1024;
  /** Longest owner (tenant) and name stored. */
  static final int MAX_OWNER = 256;
  static final int MAX_NAME = 1024;
  /** pg_advisory_xact_lock key of name commits and collection ("flotilla images"). */
  static final long LOCK_KEY = 0x666c6f74696d67L;

  static final List<String> TABLES = List.of("flotilla_image_blob", "flotilla_image_chunk", "flotilla_image", "flotilla_image_name");
  static final List<String> DDL = List.of(
      "CREATE TABLE IF NOT EXISTS flotilla_image_blob ("
          + " digest VARCHAR(71) PRIMARY KEY, size BIGINT NOT NULL, chunks INT NOT NULL,"
          + " stored_at TIMESTAMPTZ NOT NULL DEFAULT now())",
      "CREATE TABLE IF NOT EXISTS flotilla_image_chunk ("
          + " digest VARCHAR(71) NOT NULL REFERENCES flotilla_image_blob(digest) ON DELETE CASCADE,"
          + " seq INT NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (digest, seq))",
      "CREATE TABLE IF NOT EXISTS flotilla_image ("
          + " manifest VARCHAR(71) PRIMARY KEY, blobs TEXT[] NOT NULL, size BIGINT NOT NULL)",
      "CREATE TABLE IF NOT EXISTS flotilla_image_name ("
          + " owner VARCHAR(" + MAX_OWNER + ") NOT NULL, name VARCHAR(" + MAX_NAME + ") NOT NULL,"
          + " manifest VARCHAR(71) NOT NULL REFERENCES flotilla_image(manifest),"
          + " created_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (owner, name))",
      "CREATE INDEX IF NOT EXISTS flotilla_image_name_manifest ON flotilla_image_name (manifest)");

  /** Where connections come from: the journal's pool; each one is closed (returned) after use. */
  @FunctionalInterface
  public interface Connections {
    Connection open() throws SQLException;
  }

  /** One name row as a tenant sees it. */
  public record Named(String owner, String name, Digest manifest, long size, Instant created) {}

  /** A blob of an image with the size its manifest announces. */
  public record Blob(Digest digest, long size) {}

  private final Connections connections;
  private final Semaphore transfers = new Semaphore(1, true);

  public SharedImages(Connections connections) {
    this.connections = connections;
  }

  /**
   * Creates the tables if they are missing (idempotent, safe from several nodes at once: the DDL
   * runs under the advisory lock), then checks they are there. Run once at node start, after the
   * journal's own schema.
   */
  public void ensureSchema() {
    try (Connection c = connections.open()) {
      c.setAutoCommit(false);
      try (Statement s = c.createStatement()) {
        s.execute("SELECT pg_advisory_xact_lock(" + LOCK_KEY + ")");
        for (String ddl : DDL) s.execute(ddl);
        c.commit();
      } catch (SQLException e) {
        c.rollback();
        throw e;
      }
      try (Statement s = c.createStatement()) {
        for (String table : TABLES) s.executeQuery("SELECT 1 FROM " + table + " WHERE 1 = 0").close();
      }
      c.setAutoCommit(true);
    } catch (SQLException e) {
      throw new IllegalStateException("cannot create the shared image tables (" + String.join(", ", TABLES)
          + ") in the journal database: " + e.getMessage(), e);
    }
  }

  /**
   * Stores the image's blobs from {@code local} and names it {@code name} for {@code owner}
   * (replacing what that name meant before). Durable when it returns.
   *
   * @param blobs every blob of the image, manifest included
   */
  public void publish(String owner, String name, Digest manifest, List<Blob> blobs, long size, BlobStore local) {
    checkOwner(owner);
    if (name.length() > MAX_NAME) throw new ImageException("image name longer than " + MAX_NAME + " characters: refused");
    long start = System.nanoTime();
    withTransfer(() -> {
      for (Blob b : blobs) {
        try (Connection c = connections.open()) {
          c.setAutoCommit(false);
          try {
            putBlob(c, b, local);
            c.commit();
          } catch (SQLException | RuntimeException e) {
            c.rollback();
            throw e;
          } finally {
            c.setAutoCommit(true);
          }
        }
      }
      return null;
    });
    inLockedTransaction(c -> {
      for (Blob b : blobs) {
        if (!exists(c, b.digest())) putBlob(c, b, local); // swept by a concurrent delete before we were named
      }
      try (PreparedStatement p = c.prepareStatement(
          "INSERT INTO flotilla_image (manifest, blobs, size) VALUES (?, ?, ?) ON CONFLICT (manifest) DO NOTHING")) {
        p.setString(1, manifest.toString());
        p.setArray(2, c.createArrayOf("text", blobs.stream().map(b -> b.digest().toString()).toArray()));
        p.setLong(3, size);
        p.executeUpdate();
      }
      try (PreparedStatement p = c.prepareStatement(
          "INSERT INTO flotilla_image_name (owner, name, manifest) VALUES (?, ?, ?)"
              + " ON CONFLICT (owner, name) DO UPDATE SET manifest = EXCLUDED.manifest, created_at = now()")) {
        p.setString(1, owner);
        p.setString(2, name);
        p.setString(3, manifest.toString());
        p.executeUpdate();
      }
      collect(c); // the image this name meant before, if nothing else names it
      return null;
    });
    log.info("shared {} as {} for '{}' ({} blobs, {} bytes) in {} ms", name, manifest.shortHex(), owner, blobs.size(), size,
        (System.nanoTime() - start) / 1_000_000);
  }

  /** The manifest {@code name} means to {@code owner} (that owner's row only). */
  public Optional<Digest> lookup(String owner, String name) {
    if (owner.length() > MAX_OWNER || name.length() > MAX_NAME) return Optional.empty();
    return query(c -> {
      try (PreparedStatement p = c.prepareStatement("SELECT manifest FROM flotilla_image_name WHERE owner = ? AND name = ?")) {
        p.setString(1, owner);
        p.setString(2, name);
        try (ResultSet r = p.executeQuery()) {
          return r.next() ? Optional.of(Digest.parse(r.getString(1))) : Optional.<Digest>empty();
        }
      }
    });
  }

  /** Whether {@code tenant} may use {@code manifest}: a row of its own or a shared one names it. */
  public boolean visible(String tenant, Digest manifest) {
    if (tenant.length() > MAX_OWNER) return false;
    return query(c -> {
      try (PreparedStatement p = c.prepareStatement(
          "SELECT 1 FROM flotilla_image_name WHERE manifest = ? AND (owner = ? OR owner = '') LIMIT 1")) {
        p.setString(1, manifest.toString());
        p.setString(2, tenant);
        try (ResultSet r = p.executeQuery()) {
          return r.next();
        }
      }
    });
  }

  /** The rows {@code tenant} sees: its own and the shared ones, by name. */
  public List<Named> list(String tenant) {
    if (tenant.length() > MAX_OWNER) return List.of();
    return query(c -> {
      List<Named> out = new ArrayList<>();
      try (PreparedStatement p = c.prepareStatement(
          "SELECT n.owner, n.name, n.manifest, i.size, n.created_at FROM flotilla_image_name n"
              + " JOIN flotilla_image i ON i.manifest = n.manifest WHERE n.owner = ? OR n.owner = '' ORDER BY n.name, n.owner")) {
        p.setString(1, tenant);
        try (ResultSet r = p.executeQuery()) {
          while (r.next()) {
            out.add(new Named(r.getString(1), r.getString(2), Digest.parse(r.getString(3)), r.getLong(4),
                r.getTimestamp(5).toInstant()));
          }
        }
      }
      return out;
    });
  }

  /**
   * Removes {@code owner}'s name {@code name}, or (name null) every name of {@code owner} for
   * {@code manifest}; then the images no name references and the blobs no image references.
   *
   * @return the manifests whose names were removed (empty: the owner had no such name)
   */
  public Set<Digest> delete(String owner, String name, Digest manifest) {
    if (owner.length() > MAX_OWNER || (name != null && name.length() > MAX_NAME)) return Set.of();
    return inLockedTransaction(c -> {
      Set<Digest> removed = new LinkedHashSet<>();
      String sql = name != null
          ? "DELETE FROM flotilla_image_name WHERE owner = ? AND name = ? RETURNING manifest"
          : "DELETE FROM flotilla_image_name WHERE owner = ? AND manifest = ? RETURNING manifest";
      try (PreparedStatement p = c.prepareStatement(sql)) {
        p.setString(1, owner);
        p.setString(2, name != null ? name : manifest.toString());
        try (ResultSet r = p.executeQuery()) {
          while (r.next()) removed.add(Digest.parse(r.getString(1)));
        }
      }
      if (!removed.isEmpty()) collect(c);
      return removed;
    });
  }

  /** Whether {@code owner} still has a name for {@code manifest}. */
  public boolean named(String owner, Digest manifest) {
    if (owner.length() > MAX_OWNER) return false;
    return query(c -> {
      try (PreparedStatement p = c.prepareStatement("SELECT 1 FROM flotilla_image_name WHERE owner = ? AND manifest = ? LIMIT 1")) {
        p.setString(1, owner);
        p.setString(2, manifest.toString());
        try (ResultSet r = p.executeQuery()) {
          return r.next();
        }
      }
    });
  }

  /**
   * Copies blob {@code d} into {@code into}, which verifies it against its digest and
   * {@code expectedSize} (a mismatch is refused and nothing is cached).
   *
   * @param expectedSize what the manifest announced; negative for the manifest itself, then at most {@code maxSize}
   */
  public void fetch(Digest d, long expectedSize, long maxSize, BlobStore into) {
    withTransfer(() -> {
      try (Connection c = connections.open()) {
        c.setAutoCommit(false);
        c.setTransactionIsolation(Connection.TRANSACTION_REPEATABLE_READ); // one snapshot of all its chunks
        try {
          long size;
          int chunks;
          try (PreparedStatement p = c.prepareStatement("SELECT size, chunks FROM flotilla_image_blob WHERE digest = ?")) {
            p.setString(1, d.toString());
            try (ResultSet r = p.executeQuery()) {
              if (!r.next()) throw new ImageException.NotFound("blob " + d + " is not in the shared image store");
              size = r.getLong(1);
              chunks = r.getInt(2);
            }
          }
          long expected = expectedSize >= 0 ? expectedSize : size;
          if (expected > maxSize || chunks < 0 || (long) chunks * CHUNK_BYTES < expected) {
            throw new ImageException("shared blob " + d + " announces " + size + " bytes in " + chunks
                + " chunks; refused (at most " + maxSize + " bytes expected)");
          }
          try (InputStream in = new ChunkStream(c, d, chunks)) {
            into.put(in, d, expected);
          }
          c.commit();
        } finally {
          try {
            c.rollback();
          } catch (SQLException ignored) {
            // committed already
          }
          c.setAutoCommit(true);
        }
      }
      return null;
    });
  }

  // ------------------------------------------------------------------------------ internals

  private static void checkOwner(String owner) {
    if (owner.length() > MAX_OWNER) throw new ImageException("owner longer than " + MAX_OWNER + " characters: refused");
  }

  private static boolean exists(Connection c, Digest d) throws SQLException {
    try (PreparedStatement p = c.prepareStatement("SELECT 1 FROM flotilla_image_blob WHERE digest = ?")) {
      p.setString(1, d.toString());
      try (ResultSet r = p.executeQuery()) {
        return r.next();
      }
    }
  }

  /** Writes {@code b} from {@code local} in the caller's transaction unless it is there already. */
  private static void putBlob(Connection c, Blob b, BlobStore local) throws SQLException, IOException {
    long size = local.size(b.digest());
    if (size != b.size()) {
      throw new ImageException("blob " + b.digest() + " is " + size + " bytes here, the manifest says " + b.size());
    }
    int chunks = (int) ((size + CHUNK_BYTES - 1) / CHUNK_BYTES);
    try (PreparedStatement p = c.prepareStatement(
        "INSERT INTO flotilla_image_blob (digest, size, chunks) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING")) {
      p.setString(1, b.digest().toString());
      p.setLong(2, size);
      p.setInt(3, chunks);
      if (p.executeUpdate() == 0) return; // another import stored (and committed) it
    }
    try (InputStream in = local.open(b.digest());
        PreparedStatement p = c.prepareStatement("INSERT INTO flotilla_image_chunk (digest, seq, data) VALUES (?, ?, ?)")) {
      byte[] buf = new byte[CHUNK_BYTES];
      for (int seq = 0; seq < chunks; seq++) {
        int n = in.readNBytes(buf, 0, CHUNK_BYTES);
        p.setString(1, b.digest().toString());
        p.setInt(2, seq);
        p.setBytes(3, n == CHUNK_BYTES ? buf : java.util.Arrays.copyOf(buf, n));
        p.executeUpdate();
      }
    }
  }

  /** Drops images no name references, then blobs no image references (their chunks cascade). */
  private static void collect(Connection c) throws SQLException {
    try (Statement s = c.createStatement()) {
      int images = s.executeUpdate("DELETE FROM flotilla_image i WHERE NOT EXISTS"
          + " (SELECT 1 FROM flotilla_image_name n WHERE n.manifest = i.manifest)");
      int blobs = s.executeUpdate("DELETE FROM flotilla_image_blob b WHERE NOT EXISTS"
          + " (SELECT 1 FROM flotilla_image i WHERE b.digest = ANY (i.blobs))");
      if (images > 0 || blobs > 0) log.info("shared image store: removed {} images and {} blobs nothing names", images, blobs);
    }
  }

  interface SqlWork<T> {
    T run(Connection c) throws SQLException, IOException;
  }

  private <T> T query(SqlWork<T> work) {
    try (Connection c = connections.open()) {
      return work.run(c);
    } catch (SQLException | IOException e) {
      throw unavailable(e);
    }
  }

  private <T> T inLockedTransaction(SqlWork<T> work) {
    try (Connection c = connections.open()) {
      c.setAutoCommit(false);
      try {
        try (Statement s = c.createStatement()) {
          s.execute("SELECT pg_advisory_xact_lock(" + LOCK_KEY + ")");
        }
        T out = work.run(c);
        c.commit();
        return out;
      } catch (SQLException | IOException | RuntimeException e) {
        c.rollback();
        throw e;
      } finally {
        c.setAutoCommit(true);
      }
    } catch (SQLException | IOException e) {
      throw unavailable(e);
    }
  }

  interface Transfer<T> {
    T run() throws SQLException, IOException;
  }

  private <T> T withTransfer(Transfer<T> work) {
    try {
      transfers.acquire();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new ImageException("interrupted while waiting to transfer an image", e);
    }
    try {
      return work.run();
    } catch (SQLException | IOException e) {
      throw unavailable(e);
    } finally {
      transfers.release();
    }
  }

  private static ImageException unavailable(Exception e) {
    return new ImageException.Unavailable("the shared image store (PostgreSQL) failed: " + e.getMessage(), e);
  }

  /** A blob's chunks in order, one row at a time (at most one chunk in memory). */
  private static final class ChunkStream extends InputStream {
    private final PreparedStatement select;
    private final int chunks;
    private int next;
    private byte[] current = new byte[0];
    private int pos;

    ChunkStream(Connection c, Digest d, int chunks) throws SQLException {
      this.select = c.prepareStatement(
          "SELECT data FROM flotilla_image_chunk WHERE digest = ? AND seq = ? AND octet_length(data) <= " + CHUNK_BYTES);
      this.select.setString(1, d.toString());
      this.chunks = chunks;
    }

    private boolean fill() throws IOException {
      while (pos >= current.length) {
        if (next >= chunks) return false;
        try {
          select.setInt(2, next);
          try (ResultSet r = select.executeQuery()) {
            if (!r.next()) throw new IOException("chunk " + next + " of " + chunks + " is missing or too large");
            current = r.getBytes(1);
          }
        } catch (SQLException e) {
          throw new IOException(e.getMessage(), e);
        }
        next++;
        pos = 0;
      }
      return true;
    }

    @Override
    public int read() throws IOException {
      return fill() ? current[pos++] & 0xff : -1;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) return 0;
      if (!fill()) return -1;
      int n = Math.min(len, current.length - pos);
      System.arraycopy(current, pos, b, off, n);
      pos += n;
      return n;
    }

    @Override
    public void close() throws IOException {
      try {
        select.close();
      } catch (SQLException e) {
        throw new IOException(e.getMessage(), e);
      }
    }
  }
}
