package dev.flotilla.cli;

import dev.flotilla.api.v1.Image;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code image ls}'s table (one row per name, {@code <none>} for an image known by digest only)
 * and the JSON of the image commands: an object per image with names, digest, size (bytes),
 * owner ("yours" or "shared"), created and lastUsed (RFC 3339 UTC or null).
 */
public final class ImageText {
  static final String[] COLUMNS = {"NAME", "DIGEST", "SIZE", "OWNER", "CREATED", "LAST USED"};

  private ImageText() {}

  public static String table(List<Image> images, Instant now) {
    List<String[]> rows = new ArrayList<>();
    rows.add(COLUMNS);
    for (Image i : images) {
      List<String> names = i.getNamesList().isEmpty() ? List.of("<none>") : i.getNamesList();
      for (String n : names) {
        rows.add(new String[] {Names.oneLine(n), shortDigest(i.getDigest()), size(i.getSize()), Names.oneLine(i.getOwner()),
            i.hasCreated() ? SandboxText.age(Names.instant(i.getCreated()), now) + " ago" : "-",
            i.hasLastUsed() ? SandboxText.age(Names.instant(i.getLastUsed()), now) + " ago" : "-"});
      }
    }
    int[] widths = new int[COLUMNS.length];
    for (String[] row : rows) {
      for (int c = 0; c < row.length; c++) widths[c] = Math.max(widths[c], row[c].length());
    }
    StringBuilder b = new StringBuilder();
    for (String[] row : rows) {
      for (int c = 0; c < row.length; c++) {
        b.append(row[c]);
        if (c + 1 < row.length) b.append(" ".repeat(widths[c] - row[c].length() + 2));
      }
      b.append('\n');
    }
    return b.toString();
  }

  /** {@code NAME DIGEST} (the name pulled or imported by, which the node lists first), or the digest alone. */
  public static String line(Image i) {
    return (i.getNamesList().isEmpty() ? "" : Names.oneLine(i.getNames(0)) + " ") + i.getDigest() + "\n";
  }

  public static String object(Image i) {
    StringBuilder b = new StringBuilder();
    write(b, i, "");
    return b.append('\n').toString();
  }

  public static String array(List<Image> images) {
    if (images.isEmpty()) return "[]\n";
    StringBuilder b = new StringBuilder("[\n");
    for (int k = 0; k < images.size(); k++) {
      b.append("  ");
      write(b, images.get(k), "  ");
      b.append(k + 1 < images.size() ? ",\n" : "\n");
    }
    return b.append("]\n").toString();
  }

  private static void write(StringBuilder b, Image i, String indent) {
    String in = indent + "  ";
    b.append("{\n");
    b.append(in).append("\"names\": [");
    for (int k = 0; k < i.getNamesCount(); k++) {
      b.append(k == 0 ? "" : ", ").append(SandboxJson.str(i.getNames(k)));
    }
    b.append("],\n");
    b.append(in).append("\"digest\": ").append(SandboxJson.str(i.getDigest())).append(",\n");
    b.append(in).append("\"size\": ").append(Long.toUnsignedString(i.getSize())).append(",\n");
    b.append(in).append("\"owner\": ").append(SandboxJson.str(i.getOwner())).append(",\n");
    b.append(in).append("\"created\": ").append(i.hasCreated() ? SandboxJson.str(Names.rfc3339(i.getCreated())) : "null")
        .append(",\n");
    b.append(in).append("\"lastUsed\": ").append(i.hasLastUsed() ? SandboxJson.str(Names.rfc3339(i.getLastUsed())) : "null")
        .append('\n');
    b.append(indent).append('}');
  }

  static String shortDigest(String digest) {
    int colon = digest.indexOf(':');
    return colon > 0 && digest.length() > colon + 13 ? digest.substring(0, colon + 13) : Names.oneLine(digest);
  }

  /** Bytes for people: B, KiB, MiB, GiB with one decimal. */
  static String size(long bytes) {
    if (bytes < 1024) return bytes + " B";
    String[] units = {"KiB", "MiB", "GiB", "TiB"};
    double v = bytes;
    int u = -1;
    while (v >= 1024 && u + 1 < units.length) {
      v /= 1024;
      u++;
    }
    return String.format(java.util.Locale.ROOT, "%.1f %s", v, units[u]);
  }
}
