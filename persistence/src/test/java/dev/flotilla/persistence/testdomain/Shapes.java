package dev.flotilla.persistence.testdomain;

import dev.flotilla.persistence.FlotillaSerializable;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.SourceRef;

/** A small sealed hierarchy of records, as entities use them. */
public final class Shapes {
  private Shapes() {}

  public sealed interface Shape extends FlotillaSerializable permits Circle, Square {}

  public record Circle(double radius, Color color) implements Shape {}

  public record Square(int side, Color color, Optional<String> label) implements Shape {}

  public enum Color {
    RED,
    GREEN {
      @Override
      public String toString() {
        return "green!"; // a constant-specific body: its class is Color$1
      }
    },
    BLUE
  }

  public record Drawing(
      String name, List<Shape> shapes, Map<String, String> labels, Instant createdAt, long revision)
      implements FlotillaSerializable {}

  /** A message that carries a reply-to, as cluster messages do. */
  public record Envelope(String text, ActorRef<String> replyTo) implements FlotillaSerializable {}

  /** Pekko types with their own serializers nested in a record, as file transfer commands carry them. */
  public record Upload(String name, SourceRef<String> data, StatusReply<String> status) implements FlotillaSerializable {}

  /** A plain (non-record) class: uses Kryo's CompatibleFieldSerializer. */
  public static final class PlainHolder implements FlotillaSerializable {
    private final String name;
    private final int count;

    public PlainHolder(String name, int count) {
      this.name = name;
      this.count = count;
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof PlainHolder p && p.count == count && Objects.equals(p.name, name);
    }

    @Override
    public int hashCode() {
      return Objects.hash(name, count);
    }

    @Override
    public String toString() {
      return "PlainHolder[" + name + ", " + count + "]";
    }
  }

  /** Deliberately not registered. */
  public record Unregistered(String value) implements FlotillaSerializable {}
}
