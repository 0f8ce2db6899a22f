/** A ustar archive of regular files (owned by root), enough for Docker's `putArchive`. */
export const tarFiles = (
  files: ReadonlyArray<{ readonly path: string; readonly content: string; readonly mode?: number | undefined }>
) => {
  const blocks: Array<Buffer> = []
  const mtime = Math.floor(Date.now() / 1000)
  for (const file of files) {
    const body = Buffer.from(file.content, "utf8")
    const header = Buffer.alloc(512)
    const { name, prefix } = splitName(file.path.replace(/^\/+/, ""))
    header.write(name, 0, 100, "utf8")
    octal(header, 100, 8, file.mode ?? 0o644)
    octal(header, 108, 8, 0)
    octal(header, 116, 8, 0)
    octal(header, 124, 12, body.length)
    octal(header, 136, 12, mtime)
    header.fill(" ", 148, 156)
    header.write("0", 156, 1, "utf8")
    header.write("ustar\u000000", 257, 8, "binary")
    header.write("root", 265, 32, "utf8")
    header.write("root", 297, 32, "utf8")
    header.write(prefix, 345, 155, "utf8")
    let sum = 0
    for (const byte of header) sum += byte
    header.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, 8, "binary")
    blocks.push(header, body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

const octal = (buffer: Buffer, offset: number, length: number, value: number) => {
  buffer.write(`${value.toString(8).padStart(length - 1, "0")}\u0000`, offset, length, "binary")
}

const splitName = (path: string) => {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: "" }
  for (let i = path.lastIndexOf("/"); i > 0; i = path.lastIndexOf("/", i - 1)) {
    const prefix = path.slice(0, i)
    const name = path.slice(i + 1)
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100) return { name, prefix }
  }
  throw new Error(`path too long for a tar header: ${path}`)
}
