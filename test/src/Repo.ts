import { execFileSync } from "node:child_process"

/** A git repository with one commit on `branch` (`main` unless given), for workspaces to clone. */
export const makeRepo = (dir: string, branch = "main") => {
  const git = (...args: Array<string>) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd: dir })
  execFileSync("mkdir", ["-p", dir])
  git("init", "-q", "-b", branch)
  execFileSync("sh", ["-c", "echo '# demo' > README.md"], { cwd: dir })
  git("add", "-A")
  git("commit", "-q", "-m", "initial")
  return dir
}
