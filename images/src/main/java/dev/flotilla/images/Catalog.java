package dev.flotilla.images;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.flotilla.images.oci.Json;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The node's small index of images ({@code <root>/catalog.json}): which images are here (with
 * their blobs, so garbage collection needs no manifest parsing), who owns them, when each was last
 * used, which names point at which manifest digest, and which index digests were resolved to
 * which platform manifest. Not thread-safe: {@link ImageStore} guards it. Saved atomically.
 */
final class Catalog {

  static final String SHARED = "";

  static final class Entry {
    final Digest manifest;
    final Digest config;
    final List<Digest> layers;
    final long size;
    final Set<String> owners = new HashSet<>();
    long lastUsed;
    /** Published to or fetched from the cluster's shared store: its names live there, not here. */
    boolean shared;

    Entry(Digest manifest, Digest config, List<Digest> layers, long size, long lastUsed) {
      this.manifest = manifest;
      this.config = config;
      this.layers = List.copyOf(layers);
      this.size = size;
      this.lastUsed = lastUsed;
    }

    boolean visibleTo(String tenant) {
      return owners.contains(SHARED) || owners.contains(tenant);
    }
  }

  record Name(String owner, String name, Digest digest) {}

  final Map<Digest, Entry> images = new LinkedHashMap<>();
  final List<Name> names = new ArrayList<>();
  final Map<Digest, Digest> aliases = new LinkedHashMap<>();
  private final Path file;

  private Catalog(Path file) {
    this.file = file;
  }

  static Catalog load(Path file) {
    Catalog c = new Catalog(file);
    if (!Files.exists(file)) {
      return c;
    }
    try {
      JsonNode n = Json.read(Files.readAllBytes(file), file.toString());
      for (JsonNode i : n.path("images")) {
        List<Digest> layers = new ArrayList<>();
        i.path("layers").forEach(l -> layers.add(Digest.parse(l.asText())));
        Entry e = new Entry(Digest.parse(i.get("manifest").asText()), Digest.parse(i.get("config").asText()), layers,
            i.path("size").asLong(), i.path("lastUsed").asLong());
        i.path("owners").forEach(o -> e.owners.add(o.asText()));
        e.shared = i.path("shared").asBoolean(false);
        c.images.put(e.manifest, e);
      }
      for (JsonNode m : n.path("names")) {
        c.names.add(new Name(m.get("owner").asText(), m.get("name").asText(), Digest.parse(m.get("digest").asText())));
      }
      n.path("aliases").fields().forEachRemaining(a -> c.aliases.put(Digest.parse(a.getKey()), Digest.parse(a.getValue().asText())));
      return c;
    } catch (IOException | RuntimeException e) {
      throw new ImageException("the image catalog " + file + " cannot be read (" + e.getMessage()
          + "); move it away to start with an empty one (blobs are kept and re-verified on pull)", e);
    }
  }

  void save() {
    ObjectNode n = Json.MAPPER.createObjectNode();
    n.put("version", 1);
    ArrayNode is = n.putArray("images");
    for (Entry e : images.values()) {
      ObjectNode i = is.addObject();
      i.put("manifest", e.manifest.toString());
      i.put("config", e.config.toString());
      ArrayNode ls = i.putArray("layers");
      e.layers.forEach(l -> ls.add(l.toString()));
      i.put("size", e.size);
      ArrayNode os = i.putArray("owners");
      e.owners.stream().sorted().forEach(os::add);
      i.put("lastUsed", e.lastUsed);
      if (e.shared) i.put("shared", true);
    }
    ArrayNode ns = n.putArray("names");
    for (Name m : names) {
      ns.addObject().put("owner", m.owner()).put("name", m.name()).put("digest", m.digest().toString());
    }
    ObjectNode as = n.putObject("aliases");
    aliases.forEach((k, v) -> as.put(k.toString(), v.toString()));
    try {
      Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
      Files.write(tmp, Json.write(n));
      Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-------"));
      Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (IOException e) {
      throw new ImageException("cannot save the image catalog " + file + ": " + e.getMessage(), e);
    }
  }

  /** The digest {@code name} means to {@code tenant}: its own name first, then a shared one. */
  Digest lookup(String name, String tenant) {
    Digest shared = null;
    for (Name m : names) {
      if (m.name().equals(name)) {
        if (m.owner().equals(tenant)) {
          return m.digest();
        }
        if (m.owner().equals(SHARED)) {
          shared = m.digest();
        }
      }
    }
    return shared;
  }

  void putName(String owner, String name, Digest digest) {
    names.removeIf(m -> m.owner().equals(owner) && m.name().equals(name));
    names.add(new Name(owner, name, digest));
  }

  /** Drops an image with its names and aliases. */
  void remove(Digest manifest) {
    images.remove(manifest);
    names.removeIf(m -> m.digest().equals(manifest));
    aliases.values().removeIf(v -> v.equals(manifest));
  }
}
