package dev.flotilla.persistence.kryo;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.KryoException;
import com.esotericsoftware.kryo.Serializer;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.io.Output;

/** Enums by name, so constants may be reordered or added without changing stored meaning. */
final class EnumNameSerializer<E extends Enum<E>> extends Serializer<E> {
  private final Class<E> type;

  EnumNameSerializer(Class<E> type) {
    this.type = type;
    setImmutable(true);
  }

  @Override
  public void write(Kryo kryo, Output output, E value) {
    output.writeString(value.name());
  }

  @Override
  public E read(Kryo kryo, Input input, Class<? extends E> ignored) {
    String name = input.readString();
    try {
      return Enum.valueOf(type, name);
    } catch (IllegalArgumentException e) {
      throw new KryoException(
          "Stored enum constant " + type.getName() + "." + name + " no longer exists;"
              + " constants of stored enums must never be removed or renamed",
          e);
    }
  }
}
