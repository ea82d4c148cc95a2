"""`python -m minilm.grade`: the classroom grader, which lives in minilm/classroom/grade.py."""
from minilm.classroom.grade import main

if __name__ == "__main__":
    raise SystemExit(main())
