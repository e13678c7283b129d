package dev.flotilla.images.layout;

import com.fasterxml.jackson.databind.JsonNode;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageConfig;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.images.blob.BlobStore;
import dev.flotilla.images.oci.Descriptor;
import dev.flotilla.images.oci.ImageIndex;
import dev.flotilla.images.oci.Json;
import dev.flotilla.images.oci.Manifest;
import dev.flotilla.images.oci.MediaTypes;
import dev.flotilla.images.oci.Platform;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * Imports an image from an OCI image layout ({@code oci-layout}, {@code index.json}, {@code
 * blobs/sha256/...}) or a {@code docker save} archive ({@code manifest.json} with Config,
 * RepoTags, Layers), each a directory or a tar. Every blob goes through the {@link BlobStore}
 * (a layout's blobs are checked against their names). A docker-save image gets a synthesized OCI
 * manifest, stored like any other, so everything downstream sees one kind of image.
 */
public final class ImageImporter {

  private static final Set<String> METADATA = Set.of("oci-layout", "index.json", "manifest.json", "repositories");
  private static final Pattern BLOB = Pattern.compile("blobs/sha256/([a-f0-9]{64})");
  private static final String CONTAINERD_NAME = "io.containerd.image.name";

  private final BlobStore blobs;
  private final long maxMetadataBytes;

  public ImageImporter(BlobStore blobs, long maxMetadataBytes) {
    this.blobs = blobs;
    this.maxMetadataBytes = maxMetadataBytes;
  }

  /** What an import stored: the manifest (its digest is the image's identity) and the name. */
  public record Imported(Digest manifestDigest, Manifest manifest, ImageReference name) {}

  /**
   * @param name {@code REPO:TAG} to import it as; otherwise the archive's own name
   */
  public Imported importArchive(Path archive, Optional<String> name) {
    Optional<ImageReference> override = name.map(ImageImporter::parseName);
    Map<String, byte[]> metadata = new HashMap<>();
    Map<String, Digest> stored = new HashMap<>();
    ArchiveEntries.visit(archive, (entry, size, in) -> {
      if (METADATA.contains(entry)) {
        if (size > maxMetadataBytes) {
          throw new ImageException(archive + ": " + entry + " is larger than " + maxMetadataBytes + " bytes; refused");
        }
        metadata.put(entry, in.readNBytes((int) size));
        return;
      }
      var m = BLOB.matcher(entry);
      if (m.matches()) {
        stored.put(entry, blobs.put(in, new Digest(m.group(1)), size));
      } else if (isDockerSaveBlob(entry)) {
        stored.put(entry, blobs.put(in, null, size));
      }
    });
    if (metadata.containsKey("index.json") && metadata.containsKey("oci-layout")) {
      return fromLayout(archive, metadata.get("index.json"), override);
    }
    if (metadata.containsKey("manifest.json")) {
      return fromDockerSave(archive, metadata.get("manifest.json"), stored, override);
    }
    throw new ImageException(archive + " is neither an OCI image layout (oci-layout + index.json) nor a docker save "
        + "archive (manifest.json)");
  }

  /**
   * docker save (before Docker 25) keeps the config at the top and each layer as {@code <id>/layer.tar};
   * skopeo's and podman's {@code docker-archive} keep each layer at the top as {@code <hex>.tar}.
   */
  private static boolean isDockerSaveBlob(String entry) {
    return (!entry.contains("/") && (entry.endsWith(".json") || entry.endsWith(".tar"))) || entry.endsWith("/layer.tar");
  }

  private Imported fromLayout(Path archive, byte[] indexJson, Optional<ImageReference> override) {
    ImageIndex index = ImageIndex.parse(indexJson);
    if (index.manifests().isEmpty()) {
      throw new ImageException(archive + ": index.json lists no image");
    }
    Descriptor chosen = null;
    if (index.manifests().size() == 1) {
      chosen = index.manifests().get(0);
    } else if (override.isPresent()) {
      ImageReference want = override.get();
      chosen = index.manifests().stream()
          .filter(d -> want.tag().equals(d.annotations().get(Descriptor.REF_NAME))
              || want.toString().equals(fullName(d).map(ImageReference::toString).orElse(null)))
          .findFirst().orElse(null);
    }
    if (chosen == null) {
      throw new ImageException(archive + " holds " + index.manifests().size() + " images ("
          + index.manifests().stream().map(d -> d.annotations().getOrDefault(Descriptor.REF_NAME, d.digest().toString()))
              .collect(Collectors.joining(", "))
          + "); choose one with --name REPO:TAG whose tag is its ref.name");
    }
    Descriptor manifestDesc = chosen;
    if (MediaTypes.INDEXES.contains(chosen.mediaType())) {
      manifestDesc = ImageIndex.parse(readStored(archive, chosen.digest())).select(Platform.LINUX_AMD64);
    }
    Manifest m = Manifest.parse(readStored(archive, manifestDesc.digest()));
    checkContent(archive, m);
    Descriptor entry = chosen;
    ImageReference name = override.or(() -> fullName(entry)).orElseThrow(() -> new ImageException(
        archive + " names its image only '" + entry.annotations().getOrDefault(Descriptor.REF_NAME, "")
            + "' (no repository); import it with --name REPO:TAG"));
    return new Imported(manifestDesc.digest(), m, name);
  }

  /** A full name from the layout: containerd's annotation, or a ref.name that is a whole reference. */
  private static Optional<ImageReference> fullName(Descriptor d) {
    String n = d.annotations().get(CONTAINERD_NAME);
    if (n == null) {
      String ref = d.annotations().get(Descriptor.REF_NAME);
      n = ref != null && (ref.contains("/") || ref.contains(":")) ? ref : null;
    }
    if (n == null) {
      return Optional.empty();
    }
    try {
      return Optional.of(parseName(n));
    } catch (ImageException e) {
      return Optional.empty();
    }
  }

  private Imported fromDockerSave(Path archive, byte[] manifestJson, Map<String, Digest> stored,
      Optional<ImageReference> override) {
    JsonNode arr;
    try {
      arr = Json.MAPPER.readTree(manifestJson);
    } catch (IOException e) {
      throw new ImageException(archive + ": manifest.json is not valid JSON: " + e.getMessage(), e);
    }
    if (arr == null || !arr.isArray() || arr.isEmpty()) {
      throw new ImageException(archive + ": manifest.json lists no image");
    }
    JsonNode entry = null;
    if (arr.size() == 1) {
      entry = arr.get(0);
    } else if (override.isPresent()) {
      for (JsonNode e : arr) {
        for (String t : Json.strings(e, "RepoTags")) {
          if (override.get().toString().equals(tryParse(t))) {
            entry = e;
          }
        }
      }
    }
    if (entry == null) {
      List<String> tags = new ArrayList<>();
      arr.forEach(e -> tags.addAll(Json.strings(e, "RepoTags")));
      throw new ImageException(archive + " holds " + arr.size() + " images (" + String.join(", ", tags)
          + "); choose one with --name REPO:TAG");
    }
    Digest configDigest = storedEntry(archive, stored, Json.text(entry, "Config"), "Config");
    ImageConfig config = ImageConfig.parse(blobs.read(configDigest, maxMetadataBytes));
    List<String> layerPaths = Json.strings(entry, "Layers");
    if (config.diffIds().size() != layerPaths.size()) {
      throw new ImageException(archive + ": the config lists " + config.diffIds().size() + " layers but manifest.json "
          + layerPaths.size());
    }
    List<Descriptor> layers = new ArrayList<>();
    for (String p : layerPaths) {
      Digest d = storedEntry(archive, stored, p, "Layers");
      layers.add(new Descriptor(layerMediaType(d), d, blobs.size(d)));
    }
    Manifest m = new Manifest(MediaTypes.OCI_MANIFEST,
        new Descriptor(MediaTypes.OCI_CONFIG, configDigest, blobs.size(configDigest)), layers);
    Digest manifestDigest = blobs.put(m.toJson(), null);
    List<String> repoTags = Json.strings(entry, "RepoTags");
    ImageReference name = override.orElseGet(() -> {
      if (repoTags.isEmpty()) {
        throw new ImageException(archive + " has no RepoTags for its image; import it with --name REPO:TAG");
      }
      return parseName(repoTags.get(0));
    });
    return new Imported(manifestDigest, m, name);
  }

  private String layerMediaType(Digest d) {
    try (InputStream in = blobs.open(d)) {
      byte[] magic = in.readNBytes(2);
      boolean gzip = magic.length == 2 && (magic[0] & 0xff) == 0x1f && (magic[1] & 0xff) == 0x8b;
      return gzip ? MediaTypes.OCI_LAYER_GZIP : MediaTypes.OCI_LAYER_TAR;
    } catch (IOException e) {
      throw new ImageException("cannot read layer " + d + ": " + e.getMessage(), e);
    }
  }

  private static Digest storedEntry(Path archive, Map<String, Digest> stored, String path, String field) {
    String n = path == null ? null : ArchiveEntries.normalize(path);
    Digest d = n == null ? null : stored.get(n);
    if (d == null) {
      throw new ImageException(archive + ": manifest.json " + field + " names '" + path + "', which the archive does not hold");
    }
    return d;
  }

  private byte[] readStored(Path archive, Digest d) {
    if (!blobs.contains(d)) {
      throw new ImageException(archive + " does not hold blob " + d + " that its index or manifest names");
    }
    return blobs.read(d, maxMetadataBytes);
  }

  private void checkContent(Path archive, Manifest m) {
    List<Descriptor> all = new ArrayList<>(m.layers());
    all.add(m.config());
    for (Descriptor d : all) {
      if (!blobs.contains(d.digest())) {
        throw new ImageException(archive + " does not hold blob " + d.digest() + " that its manifest names");
      }
      if (blobs.size(d.digest()) != d.size()) {
        throw new ImageException(archive + ": blob " + d.digest() + " is " + blobs.size(d.digest())
            + " bytes, its manifest says " + d.size() + "; refused");
      }
      if (MediaTypes.isZstd(d.mediaType())) {
        throw new ImageException(archive + ": layer " + d.digest() + " is zstd; zstd layers are not supported yet");
      }
    }
  }

  private static ImageReference parseName(String n) {
    ImageReference r = ImageReference.parse(n);
    if (r.digest() != null || r.tag() == null) {
      throw new ImageException("image name '" + n + "' must be REPO:TAG without a digest");
    }
    return r;
  }

  private static String tryParse(String n) {
    try {
      return parseName(n).toString();
    } catch (ImageException e) {
      return null;
    }
  }
}
