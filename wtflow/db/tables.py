"""The tables of run history. Names start with ``wtflow_`` so they can share a team database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKeyConstraint, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Base of wtflow's tables."""


class RunRow(Base):
    """One run of a workflow."""

    __tablename__ = "wtflow_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow: Mapped[str] = mapped_column(Text, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)

    nodes: Mapped[list[NodeRunRow]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="NodeRunRow.position"
    )


class NodeRunRow(Base):
    """One node's execution within a run (all its attempts)."""

    __tablename__ = "wtflow_node_runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)

    run: Mapped[RunRow] = relationship(back_populates="nodes")
    artifacts: Mapped[list[ArtifactRow]] = relationship(
        back_populates="node_run", cascade="all, delete-orphan", order_by="ArtifactRow.name"
    )

    __table_args__ = (ForeignKeyConstraint(["run_id"], ["wtflow_runs.id"], ondelete="CASCADE"),)


class ArtifactRow(Base):
    """One stored artifact of a node's execution."""

    __tablename__ = "wtflow_artifacts"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)

    node_run: Mapped[NodeRunRow] = relationship(back_populates="artifacts")

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "node"], ["wtflow_node_runs.run_id", "wtflow_node_runs.name"], ondelete="CASCADE"
        ),
    )
